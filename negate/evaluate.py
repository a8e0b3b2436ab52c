"""``negate evaluate`` / ``python -m negate.evaluate``: a saved model on a dataset (``protocol=holdout``, the default:
``ckpt=FOLDER data=...``), or cross-validation of the configured recipe (``protocol=cv``: leave-one-``cv.group_by``-out,
``cv.group_by=family`` for the content-controlled protocol). Both write ``report.md``, ``metrics.json`` and plots.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from negate.ensemble import make_runner
from negate.evaluation.metrics import binary_metrics
from negate.featureset import load_feature_set
from negate.model_folder import load_checked_model, read_training_images
from negate.operating_points import DEFAULT, at_operating_point
from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers
from negate.protocol import check_protocol, cross_validate, report_path, robustness_sweep, write_split_report
from negate.registry import model_roots
from negate.run_logger import create_run_logger
from negate.tables import print_metrics_table

log = logging.getLogger(__name__)
register_resolvers()


def training_overlap(model_folder: Path, hashes: list[str | None]) -> dict | None:
    """Which evaluation rows the model was trained or validated on (same file bytes). None when the model folder
    predates ``training_images.sha256``."""
    seen = read_training_images(model_folder)
    if seen is None:
        return None
    splits = [seen.get(h) if h else None for h in hashes]
    return {"seen": np.array([s is not None for s in splits], dtype=bool),
            "train": sum(s == "train" for s in splits), "val": sum(s == "val" for s in splits)}


def overlap_warning(overlap: dict, n: int, unseen: dict) -> str:
    n_seen = int(overlap["seen"].sum())
    text = (f"{n_seen} of the {n} evaluation images were used to fit this model ({overlap['train']} training, "
            f"{overlap['val']} validation images; same file bytes), so the metrics over all images are optimistic")
    if not unseen.get("n"):
        return text + "; no evaluation image is new to the model"
    auroc = unseen.get("auroc", float("nan"))
    auroc_text = f"AUROC {auroc:.3f}" if np.isfinite(auroc) else "AUROC undefined (one class only)"
    return (text + f"; on the {unseen['n']} images it never saw ('unseen'): {auroc_text}, accuracy "
            f"{unseen['accuracy']:.3f}")


def evaluate_model(cfg: DictConfig, run_dir: Path) -> dict:
    model, families = load_checked_model(cfg.ckpt, model_roots(cfg), cfg.get("allow_remote_code", False))
    model = at_operating_point(model, cfg.get("operating_point"))
    runner = make_runner(model.pipeline, cfg, families)
    fs = load_feature_set(cfg, runner, run_dir)
    prob = model.detector.predict_proba(fs.X)[:, 1]
    overlap = training_overlap(model.folder, runner.hashes(fs.records))
    warnings, unseen = [], None
    if overlap is None:
        log.warning("%s lists no training images (trained before negate recorded them): cannot check whether the "
                    "evaluation data overlaps its training data", model.folder)
    elif overlap["seen"].any():
        keep = ~overlap["seen"]
        unseen = binary_metrics(fs.y[keep], prob[keep], model.threshold) if keep.any() else {"n": 0}
        warnings.append(overlap_warning(overlap, len(fs.records), unseen))
        print(f"WARNING: {warnings[0]}", file=sys.stderr)
    robustness = robustness_sweep(runner, model.detector, fs.records, fs.y) if cfg.eval.robustness else None
    extra = {"model": str(model.folder), "operating_point": model.info.get("operating_point", DEFAULT),
             "skipped": len(fs.skipped)}
    if overlap is not None:
        extra["seen_in_training"] = {"n": int(overlap["seen"].sum()), "train": overlap["train"], "val": overlap["val"]}
    if unseen is not None:
        extra["unseen"] = unseen
    report = write_split_report(cfg, run_dir, fs.records, fs.y, prob, model.threshold,
                                f"Evaluation of {model.folder.name}", robustness=robustness, extra=extra,
                                warnings=warnings)
    metrics = {"test": report["overall"], **extra}
    if "camera_fpr" in report:
        metrics["test"]["camera_fpr"] = report["camera_fpr"]["fpr"]
    if robustness:
        metrics["robustness"] = {k: v["auroc"] for k, v in report["robustness"].items()}
    if warnings:
        metrics["warnings"] = warnings
    return metrics


def evaluate(cfg: DictConfig, run_dir: Path) -> dict:
    protocol = check_protocol(cfg)
    metrics = evaluate_model(cfg, run_dir) if protocol == "holdout" else cross_validate(cfg, run_dir)
    if protocol == "holdout":
        title = f"negate evaluate ({cfg.ckpt})"
    else:
        title = f"negate evaluate ({metrics.get('protocol') or f'leave-one-{cfg.cv.group_by}-out'})"
    print_metrics_table(metrics, title=title)
    if "robustness" in metrics:
        print("AUROC under perturbation: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics["robustness"].items()))
    report = report_path(cfg, run_dir)
    for warning in metrics.get("warnings", []):
        print(f"WARNING: {warning}", file=sys.stderr)  # again after the table, where the eye lands
    print(f"report: {report}")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    run_logger = create_run_logger(cfg.logger, run_dir, OmegaConf.to_container(cfg, resolve=True))
    run_logger.log_metrics(metrics)
    plots_dir = report.parent
    run_logger.log_images({f"eval/{p.stem}": p for p in plots_dir.glob("*.png")})
    run_logger.finish()
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from negate.errors import exit_on_user_error

    with exit_on_user_error():
        evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    from negate.entry import run

    run("evaluate", sys.argv[1:], main)
