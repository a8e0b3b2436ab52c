"""``evaluate``: a saved model on a dataset (``protocol=holdout``), or leave-one-group-out cross-validation of the
configured feature set and classifier (``protocol=cv``). Both write ``report.md``, ``metrics.json`` and plots.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from negate.evaluation.report import write_report
from negate.inference import load_checked_model
from negate.pipeline import FeatureRunner, pipeline_from_cfg, protocol_signature
from negate.run_logger import create_run_logger
from negate.tables import print_metrics_table
from negate.training import camera_rows, load_feature_set, loso, robustness_sweep, write_skipped

log = logging.getLogger(__name__)
PROTOCOLS = ("holdout", "cv")


def evaluate_model(cfg: DictConfig, run_dir: Path) -> dict:
    model, families = load_checked_model(cfg.ckpt, cfg.paths.models_dir, cfg.get("allow_remote_code", False))
    runner = FeatureRunner(model.pipeline, cfg, families)
    fs = load_feature_set(cfg, runner)
    write_skipped(run_dir, fs.skipped)
    prob = model.detector.predict_proba(fs.X)[:, 1]
    robustness = robustness_sweep(runner, model.detector, fs.records, fs.y) if cfg.eval.robustness else None
    meta = fs.meta()
    is_camera_real = camera_rows(cfg, fs.records)
    extra = {"model": str(model.folder), "skipped": len(fs.skipped)}
    report = write_report(run_dir, fs.y, prob, model.threshold, meta, f"Evaluation of {model.folder.name}",
                          robustness=robustness, extra=extra, n_boot=cfg.eval.n_boot, seed=cfg.seed,
                          camera=is_camera_real)
    metrics = {"test": report["overall"], **extra}
    if "camera_fpr" in report:
        metrics["test"]["camera_fpr"] = report["camera_fpr"]["fpr"]
    if robustness:
        metrics["robustness"] = {k: v["auroc"] for k, v in report["robustness"].items()}
    return metrics


def evaluate_cv(cfg: DictConfig, run_dir: Path) -> dict:
    if cfg.cv.group_by == "family":
        from negate.evaluation.families import headline, run_family_protocol

        results = run_family_protocol(cfg, run_dir)
        return {"families": headline(results), "signature": protocol_signature(cfg), "data": str(cfg.data.path)}
    pipeline = pipeline_from_cfg(cfg)
    runner = FeatureRunner(pipeline, cfg)
    fs = load_feature_set(cfg, runner)
    write_skipped(run_dir, fs.skipped)
    return {"loso": loso(cfg, runner, fs, run_dir, cfg.cv.group_by), "signature": protocol_signature(cfg),
            "data": str(cfg.data.path)}


def evaluate(cfg: DictConfig, run_dir: Path) -> dict:
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {cfg.protocol!r}")
    metrics = evaluate_model(cfg, run_dir) if cfg.protocol == "holdout" else evaluate_cv(cfg, run_dir)
    title = "negate evaluate" + (f" ({cfg.ckpt})" if cfg.protocol == "holdout" else f" (leave-one-{cfg.cv.group_by}-out)")
    print_metrics_table(metrics, title=title)
    if "robustness" in metrics:
        print("AUROC under perturbation: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics["robustness"].items()))
    report = run_dir / ("report.md" if cfg.protocol == "holdout" else
                        "families/report.md" if cfg.cv.group_by == "family" else "loso/report.md")
    print(f"report: {report}")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    run_logger = create_run_logger(cfg.logger, run_dir, OmegaConf.to_container(cfg, resolve=True))
    run_logger.log_metrics(metrics)
    plots_dir = report.parent
    run_logger.log_images({f"eval/{p.stem}": p for p in plots_dir.glob("*.png")})
    run_logger.finish()
    return metrics

