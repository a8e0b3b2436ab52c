"""``train``: features for a dataset, a grouped split, a detector fitted on train (early stopping and threshold on
val), the test split scored once, and a model folder. Optional: leave-one-source-out CV and a robustness sweep.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf

from negate.cache import ensure_writable
from negate.classifiers import build_detector
from negate.data.index import file_format
from negate.data.patches import seed_from_key
from negate.data.perturb import ROBUSTNESS_SUITE
from negate.data.records import ImageRecord
from negate.data.split import split_indices
from negate.errors import InputError
from negate.evaluation.cv import leave_one_group_out
from negate.evaluation.metrics import binary_metrics
from negate.evaluation.report import write_report
from negate.model_folder import TRAINING_IMAGES, ModelFolderError, new_model_dir, save_model, training_images_text
from negate.pipeline import FeatureRunner, load_records, pipeline_from_cfg, protocol_signature
from negate.plugins import AUGMENTATIONS
from negate.run_logger import create_run_logger
from negate.thresholds import choose_threshold, uncertain_band
from negate.tables import print_metrics_table

log = logging.getLogger(__name__)


@dataclass
class FeatureSet:
    """Feature rows of the records that could be extracted, with their labels and metadata."""

    records: list[ImageRecord]
    X: np.ndarray
    names: list[str]
    skipped: list[tuple[str, str]]

    @property
    def y(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=int)

    def meta(self, rows=None) -> dict[str, list]:
        rows = range(len(self.records)) if rows is None else rows
        recs = [self.records[i] for i in rows]
        return {"generator": [r.generator for r in recs], "source": [r.source for r in recs],
                "format": [file_format(r.path) for r in recs], "path": [r.path for r in recs]}


def run_dir_from_hydra(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        path = Path(cfg.paths.output_dir) / "runs" / "library"
        path.mkdir(parents=True, exist_ok=True)
        return path


SHOWN_SKIPPED = 20


def write_skipped(run_dir: Path, skipped: list[tuple[str, str]]) -> None:
    """``skipped.csv`` in the run folder; each skipped image logged once (the first 20), then one summary line."""
    if not skipped:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "skipped.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "reason"])
        writer.writerows(skipped)
    for path, reason in skipped[:SHOWN_SKIPPED]:
        log.warning("skipped %s: %s", path, reason)
    more = f" ({len(skipped) - SHOWN_SKIPPED} not shown above)" if len(skipped) > SHOWN_SKIPPED else ""
    log.warning("%d skipped%s, see %s", len(skipped), more, run_dir / "skipped.csv")


def load_feature_set(cfg: DictConfig, runner: FeatureRunner, run_dir: Path | None = None) -> FeatureSet:
    """Features of the configured data; images that cannot be used are listed in ``run_dir/skipped.csv``."""
    records, scan_skipped = load_records(cfg.data)
    if any(r.label is None for r in records):
        raise ValueError("training data needs a label for every image")
    kept, table = runner.features(records) if records else ([], None)
    skipped = list(scan_skipped.items()) + (runner.failures(records, table, kept) if records else [])
    if run_dir is not None:
        write_skipped(run_dir, skipped)
    if not kept:
        first = f"; first: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        listed = f"; all listed in {run_dir / 'skipped.csv'}" if run_dir is not None and skipped else ""
        raise InputError(f"none of the {len(records)} images of data.path={cfg.data.get('path')} could be "
                         f"read{first}{listed}")
    return FeatureSet([records[i] for i in kept], table.X, runner.names, skipped)


def make_detector(classifier_cfg, names: list[str]):
    return build_detector(classifier_cfg, names)


def augmented_rows(cfg: DictConfig, runner: FeatureRunner, fs: FeatureSet, rows: np.ndarray):
    """``augment.views`` seeded random views (JPEG, downscale, crop, blur) of the given rows' images.

    Returns ``(X_aug, owner_row, y_aug)``; cached like any view, so sweeps pay for augmentation once.
    """
    augmentation = AUGMENTATIONS.build(cfg.augment)
    if augmentation.views <= 0 or len(rows) == 0:
        return None
    recs = [fs.records[i] for i in rows]
    hashes = runner.hashes(recs)
    X_parts, owners = [], []
    for v in range(augmentation.views):
        attacks = [augmentation.view(seed_from_key(f"{h}|aug{v}|{cfg.seed}")) for h in hashes]
        attacks = ["" if a == "none" else a for a in attacks]
        kept, table = runner.features(recs, attacks)
        X_parts.append(table.X)
        owners.append(rows[kept])
    owner = np.concatenate(owners)
    return np.concatenate(X_parts), owner, fs.y[owner]


def loso(cfg: DictConfig, runner: FeatureRunner, fs: FeatureSet, run_dir: Path, group_by: str = "source") -> dict:
    """Leave-one-group-out over the whole dataset, also scored after JPEG q75; writes ``loso/report.md``."""
    groups = np.array([getattr(r, group_by) for r in fs.records], dtype=object)
    kept, q75 = runner.features(fs.records, "jpeg:75")
    if len(kept) != len(fs.records):
        raise RuntimeError("some images failed under jpeg:75 but not as originals")
    extra = augmented_rows(cfg, runner, fs, np.arange(len(fs.records)))
    thr = OmegaConf.to_container(cfg.threshold, resolve=True)
    result = leave_one_group_out(
        fs.X, fs.y, groups, lambda: make_detector(cfg.classifier, fs.names), thr, eval_views={"jpeg75": q75.X},
        extra=extra, val_fraction=cfg.split.val_fraction, seed=cfg.seed,
    )
    scored = ~np.isnan(result["prob"])
    y, p, t = fs.y[scored], result["prob"][scored], result["threshold"][scored]
    meta = {k: [v[i] for i in np.flatnonzero(scored)] for k, v in fs.meta().items()}
    is_camera = camera_rows(cfg, [fs.records[i] for i in np.flatnonzero(scored)])
    flagged = p >= t  # each row against its own fold's threshold
    extra_info = {
        "protocol": f"leave-one-{group_by}-out, pooled; per-fold threshold from an inner grouped validation split",
        "folds": result["folds"],
        "fpr_at_fold_thresholds": float(flagged[y == 0].mean()) if (y == 0).any() else float("nan"),
        "tpr_at_fold_thresholds": float(flagged[y == 1].mean()) if (y == 1).any() else float("nan"),
        "camera_fpr_at_fold_thresholds": float(flagged[is_camera & (y == 0)].mean()) if (is_camera & (y == 0)).any() else float("nan"),
        "camera_pattern": cfg.eval.camera_pattern,
        "camera_n": int((is_camera & (y == 0)).sum()),
    }
    robustness = {"jpeg75": (y, result["views"]["jpeg75"][scored])}
    metrics = write_report(run_dir / "loso", y, p, float(np.median(t)), meta,
                           f"Leave-one-{group_by}-out (pooled; threshold = median of the fold thresholds)",
                           robustness=robustness, extra=extra_info, n_boot=cfg.eval.n_boot, seed=cfg.seed,
                           camera=is_camera)
    # the report scores every row at one threshold, the median of the fold thresholds (each chosen without the
    # row's group); the rates at each row's own fold threshold are kept beside it
    overall = {**metrics["overall"], "camera_fpr": metrics.get("camera_fpr", {}).get("fpr", float("nan"))}
    by_format = {r["format"]: r["auroc"] for r in metrics.get("per_format", [])}
    return {"overall": overall, "jpeg75": metrics["robustness"]["jpeg75"], "auroc_by_format": by_format,
            **{k: extra_info[k] for k in ("fpr_at_fold_thresholds", "tpr_at_fold_thresholds",
                                          "camera_fpr_at_fold_thresholds")}}


def camera_rows(cfg: DictConfig, records: list[ImageRecord]) -> np.ndarray:
    """Real rows whose generator column matches ``eval.camera_pattern`` (the dev set marks "camera photo (...)")."""
    pattern = re.compile(cfg.eval.camera_pattern) if cfg.eval.get("camera_pattern") else None
    return np.array([bool(pattern and r.label == 0 and pattern.search(r.generator)) for r in records], dtype=bool)


def robustness_sweep(runner: FeatureRunner, detector, records: list[ImageRecord], y: np.ndarray) -> dict:
    """``{perturbation: (y, prob)}`` for the records seen through each perturbation of the robustness suite."""
    out = {}
    for spec in ROBUSTNESS_SUITE:
        kept, table = runner.features(records, spec)
        out[spec] = (y[kept], detector.predict_proba(table.X)[:, 1])
    return out


def _finetune_first(cfg: DictConfig, run_dir: Path) -> tuple[dict, FeatureRunner, FeatureSet, dict, dict]:
    """``finetune`` recipes: split the records, fine-tune on train (early stopping on val), then extract the fitted
    network's features for every record. Returns (pipeline, runner, features, split over the feature rows,
    model-folder artefacts)."""
    from negate.finetune.fit import WEIGHTS_FILE
    from negate.pipeline import MODEL_DIR_TOKEN
    from negate.recipe import finetuned_pipeline

    records, scan_skipped = load_records(cfg.data)
    if any(r.label is None for r in records):
        raise ValueError("training data needs a label for every image")
    groups = [getattr(r, cfg.split.group_by) for r in records] if cfg.split.group_by else None
    split = split_indices([r.label for r in records], groups, cfg.split.val_fraction, cfg.split.test_fraction, cfg.seed)
    from negate.finetune.fit import fit_detector

    weights = fit_detector([records[i] for i in split["train"]], [records[i] for i in split["val"]], cfg.finetune,
                           run_dir / "finetune", cache_dir=cfg.paths.cache_dir,
                           max_pixels=int(cfg.data.get("max_pixels", 64_000_000)), seed=int(cfg.seed))
    pipeline = finetuned_pipeline(cfg, weights)
    runner = FeatureRunner(pipeline, cfg)
    kept, table = runner.features(records)
    skipped = list(scan_skipped.items()) + runner.failures(records, table, kept)
    write_skipped(run_dir, skipped)
    if not kept:
        raise InputError(f"none of the {len(records)} images of data.path={cfg.data.get('path')} could be read")
    fs = FeatureSet([records[i] for i in kept], table.X, runner.names, skipped)
    row_of = {r: j for j, r in enumerate(kept)}
    rows = {k: np.array([row_of[i] for i in v if i in row_of], dtype=int) for k, v in split.items()}
    pipeline["encoder"]["weights_dir"] = MODEL_DIR_TOKEN  # the saved model loads its weights from its own folder
    return pipeline, runner, fs, rows, {WEIGHTS_FILE: weights}


def train(cfg: DictConfig) -> dict:
    from negate.recipe import finetune_enabled

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    ensure_writable(cfg.paths.models_dir, "model folder", "paths.models_dir or NEGATE_HOME")  # fail now, not later
    name = cfg.get("model_name")
    if name and (Path(cfg.paths.models_dir) / str(name)).exists():
        raise ModelFolderError(f"a model named {name!r} already exists in {cfg.paths.models_dir}: choose another "
                               "model_name")
    run_dir = run_dir_from_hydra(cfg)
    if cfg.get("ensemble"):
        from negate.ensemble_train import train_ensemble

        return train_ensemble(cfg, run_dir)
    artefacts: dict = {}
    if finetune_enabled(cfg):
        pipeline, runner, fs, split, artefacts = _finetune_first(cfg, run_dir)
        y = fs.y
    else:
        pipeline = pipeline_from_cfg(cfg)
        runner = FeatureRunner(pipeline, cfg)
        fs = load_feature_set(cfg, runner, run_dir)
        y = fs.y
        groups = [getattr(r, cfg.split.group_by) for r in fs.records] if cfg.split.group_by else None
        split = split_indices(y, groups, cfg.split.val_fraction, cfg.split.test_fraction, cfg.seed)
    pipeline["family_versions"] = {f.name: str(f.version) for f in runner.families}
    tr, va, te = split["train"], split["val"], split["test"]
    log.info("split: %d train / %d val / %d test images", len(tr), len(va), len(te))

    X_tr, y_tr = fs.X[tr], y[tr]
    if cfg.get("aligned") and not artefacts:  # feature recipes: aligned reconstructions as extra training rows
        from negate.recipe import aligned_training_records

        extra_records = aligned_training_records(cfg, [fs.records[i] for i in tr])
        kept_extra, extra_table = runner.features(extra_records)
        X_tr = np.concatenate([X_tr, extra_table.X])
        y_tr = np.concatenate([y_tr, [extra_records[i].label for i in kept_extra]])
    extra = augmented_rows(cfg, runner, fs, tr)
    if extra is not None:
        X_tr, y_tr = np.concatenate([X_tr, extra[0]]), np.concatenate([y_tr, extra[2]])
    detector = make_detector(cfg.classifier, fs.names)
    detector.fit(X_tr, y_tr, fs.X[va], y[va])
    p_val = detector.predict_proba(fs.X[va])[:, 1]
    p_test = detector.predict_proba(fs.X[te])[:, 1]
    threshold = choose_threshold(y[va], p_val, cfg.threshold.method, cfg.threshold.target_fpr)
    band = uncertain_band(threshold, cfg.threshold.uncertain_margin)

    robustness = robustness_sweep(runner, detector, [fs.records[i] for i in te], y[te]) \
        if cfg.eval.robustness and len(te) else None
    # split.test_fraction=0 (a final model fitted on everything): no test report; the protocol numbers stand for it
    report = write_report(run_dir / "test", y[te], p_test, threshold, fs.meta(te), "Test split", robustness=robustness,
                          n_boot=cfg.eval.n_boot, seed=cfg.seed, camera=camera_rows(cfg, [fs.records[i] for i in te])) \
        if len(te) else {"overall": {}}
    metrics = {"val": binary_metrics(y[va], p_val, threshold), "test": report["overall"],
               "split": {k: int(len(v)) for k, v in split.items()}, "n_skipped": len(fs.skipped)}
    if "camera_fpr" in report:
        metrics["test"]["camera_fpr"] = report["camera_fpr"]["fpr"]
    if robustness:
        metrics["robustness"] = {k: v["auroc"] for k, v in report["robustness"].items()}
    if cfg.eval.loso:
        metrics["loso"] = loso(cfg, runner, fs, run_dir, cfg.split.group_by or "source")

    model_dir = new_model_dir(cfg.paths.models_dir, cfg.get("model_name") or None)
    card = {
        "families": ", ".join(f.name for f in runner.families),
        "data": f"{cfg.data.kind} {cfg.data.path} ({len(fs.records)} images, {int(y.sum())} synthetic; "
                f"{len(fs.skipped)} skipped); normalisation: {pipeline['reencode'] or 'none'}",
        "split": f"group_by={cfg.split.group_by}, val={cfg.split.val_fraction}, test={cfg.split.test_fraction}, seed={cfg.seed}",
        "threshold_rule": f"{cfg.threshold.method} (target FPR {cfg.threshold.target_fpr}) on the validation split",
        "sections": {},
    }
    trained_on = [fs.records[i] for i in np.r_[tr, va]]
    card["sections"]["Training data"] = licence_line(trained_on)
    if artefacts:
        card["sections"]["Fine-tuned detector"] = finetune_card(artefacts)
    measured = measured_protocol(cfg)
    if measured:
        card["sections"]["Selection protocol (measured for this recipe)"] = measured
    if "loso" in metrics:
        lo = metrics["loso"]
        card["sections"]["Leave-one-source-out protocol"] = (
            f"pooled AUROC {lo['overall']['auroc']:.4f}; after JPEG q75 {lo['jpeg75']['auroc']:.4f}; "
            f"camera-photo FPR at fold thresholds {lo['camera_fpr_at_fold_thresholds']:.4f}"
        )
    hashes = runner.hashes(fs.records)
    seen = training_images_text({"train": [hashes[i] for i in tr], "val": [hashes[i] for i in va]})
    save_model(model_dir, detector, pipeline, fs.names, threshold, band, metrics, card, {TRAINING_IMAGES: seen},
               artefacts=artefacts)
    _write_predictions(run_dir / "test_predictions.csv", [fs.records[i] for i in te], p_test)

    print_metrics_table(metrics, title=f"negate train: test split ({len(te)} images from unseen "
                                       f"{cfg.split.group_by or 'random'} groups)")
    print(f"model folder: {model_dir}\nreport: {run_dir / 'test' / 'report.md'}")
    run_logger = create_run_logger(cfg.logger, run_dir, OmegaConf.to_container(cfg, resolve=True))
    run_logger.log_metrics(metrics)
    run_logger.log_images({f"test/{Path(p).stem}": run_dir / "test" / p for p in report.get("plots", [])})
    run_logger.finish()
    metrics["model_dir"] = str(model_dir)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    return metrics


def licence_line(trained_on: list[ImageRecord]) -> str:
    """The images a model learned from (train + validation split) and their licences (a ``licence`` column)."""
    from collections import Counter

    licences = Counter(r.extra.get("licence", "") or "not stated" for r in trained_on)
    return (f"Fitted on {len(trained_on)} images (train + validation split); their licences: "
            + "; ".join(f"{name} ({n})" for name, n in licences.most_common()))


def finetune_card(artefacts: dict) -> str:
    """Model-card text of a fine-tuned network: how it was fitted."""
    from safetensors import safe_open

    with safe_open(str(next(iter(artefacts.values()))), framework="pt") as fh:
        meta = fh.metadata() or {}
    keys = ("arch", "patch", "train_images", "aligned_pairs", "val_images", "epochs", "best_val_auroc", "seconds")
    return "- " + ", ".join(f"{k}: {meta[k]}" for k in keys if k in meta)


def measured_protocol(cfg: DictConfig) -> str:
    """The protocol numbers recorded in ``negate/protocol_results.json`` for this exact recipe, if any: the
    family-held-out protocol (with its content-only baseline) and leave-one-source-out."""
    results_file = Path(__file__).resolve().parent / "protocol_results.json"
    if not results_file.exists():
        return ""
    results = json.loads(results_file.read_text())
    signature = protocol_signature(cfg)
    lines = []
    fam = results.get(f"{signature}:families")
    if fam:
        lines.append(f"- {fam['protocol']} on {fam['data']}: AUROC {fam['auroc']:.3f} (content-only baseline on the "
                     f"same folds {fam['content_baseline_auroc']:.3f}), after JPEG q75 {fam['auroc_jpeg75']:.3f}, "
                     f"after 0.5x downscale {fam['auroc_downscale0.5']:.3f}, photo-content rows {fam['auroc_photo']:.3f}, "
                     f"camera-photo FPR at fold thresholds {fam['camera_fpr']:.3f}, content-matched pairs AUROC "
                     f"{fam['pairs_auroc']:.3f}; measured {fam['date']} with `{fam['command']}`")
    entry = results.get(signature)
    if entry:
        lines.append(f"- {entry['protocol']} on {entry['data']}: pooled AUROC {entry['auroc']:.3f}, after JPEG q75 "
                     f"{entry['auroc_jpeg75']:.3f}, camera-photo FPR at fold thresholds {entry['camera_fpr']:.3f} "
                     f"(JPEG AUROC {entry['auroc_jpeg']:.3f}, PNG AUROC {entry['auroc_png']:.3f}); measured "
                     f"{entry['date']} with `{entry['command']}`")
    return "\n".join(lines)


def _write_predictions(path: Path, records: list[ImageRecord], prob: np.ndarray) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "prob_synthetic"])
        writer.writerows((r.path, r.label, f"{p:.9f}") for r, p in zip(records, prob))
