"""``negate train`` / ``python -m negate.train [overrides]``: features for a dataset, the protocol's held-out split, a
detector fitted on train (early stopping and threshold on val), the test split scored once, and a model folder
registered under ``paths.models_dir``. Optional: leave-one-source-out CV (``eval.loso=true``) and a robustness sweep.
``experiment=ensemble``: every member recipe fitted on the same split, saved as one ensemble folder.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import hydra
import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf

from negate.cache import ensure_writable
from negate.data.records import ImageRecord
from negate.ensemble import COMBINE_TEXT, ensemble_combine, fit_ensemble, save_ensemble
from negate.errors import InputError
from negate.evaluation.metrics import binary_metrics
from negate.featureset import FeatureSet, load_feature_set, make_detector, write_skipped
from negate.model_folder import TRAINING_IMAGES, ModelFolderError, new_model_dir, save_model, training_images_text
from negate.paths import CONFIG_DIR, PACKAGE_DIR
from negate.pipeline import (MODEL_DIR_TOKEN, FeatureRunner, load_records, pipeline_from_cfg, protocol_signature,
                             register_resolvers)
from negate.operating_points import fit_recipe_points
from negate.protocol import (check_protocol, fit_threshold, holdout_split, robustness_sweep, threshold_rule,
                             write_split_report)
from negate.protocol.loso import loso
from negate.protocol.thresholds import uncertain_band
from negate.run_logger import create_run_logger
from negate.tables import print_metrics_table

log = logging.getLogger(__name__)
register_resolvers()


def run_dir_from_hydra(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        path = Path(cfg.paths.output_dir) / "runs" / "library"
        path.mkdir(parents=True, exist_ok=True)
        return path


def _finetune_first(cfg: DictConfig, run_dir: Path) -> tuple[dict, FeatureRunner, FeatureSet, dict, dict]:
    """``finetune`` recipes: split the records, fine-tune on train (early stopping on val), then extract the fitted
    network's features for every record. Returns (pipeline, runner, features, split over the feature rows,
    model-folder artefacts)."""
    from negate.finetune.fit import WEIGHTS_FILE, fit_detector
    from negate.recipe import finetuned_pipeline, format_matched_training

    records, scan_skipped = load_records(cfg.data)
    if any(r.label is None for r in records):
        raise ValueError("training data needs a label for every image")
    split = holdout_split(cfg, records)
    weights = fit_detector(format_matched_training(cfg, [records[i] for i in split["train"]]),
                           [records[i] for i in split["val"]], cfg.finetune,
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
    from negate.recipe import (FittedRecipe, finetune_enabled, format_matched_training, threshold_view_scores,
                               training_data_note, training_rows)

    if check_protocol(cfg) != "holdout":
        raise ValueError("negate train runs protocol=holdout (add eval.loso=true for leave-one-source-out CV); "
                         "protocol=cv is for negate evaluate")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    ensure_writable(cfg.paths.models_dir, "model folder", "paths.models_dir or NEGATE_HOME")  # fail now, not later
    name = cfg.get("model_name")
    if name and (Path(cfg.paths.models_dir) / str(name)).exists():
        raise ModelFolderError(f"a model named {name!r} already exists in {cfg.paths.models_dir}: choose another "
                               "model_name")
    run_dir = run_dir_from_hydra(cfg)
    if cfg.get("ensemble"):
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
        split = holdout_split(cfg, fs.records)
    pipeline["family_versions"] = {f.name: str(f.version) for f in runner.families}
    tr, va, te = split["train"], split["val"], split["test"]
    log.info("split: %d train / %d val / %d test images", len(tr), len(va), len(te))

    X_tr, y_tr = training_rows(cfg, runner, format_matched_training(cfg, [fs.records[i] for i in tr]))
    detector = make_detector(cfg.classifier, fs.names)
    detector.fit(X_tr, y_tr, fs.X[va], y[va])
    p_val = detector.predict_proba(fs.X[va])[:, 1]
    p_test = detector.predict_proba(fs.X[te])[:, 1]
    fitted = FittedRecipe(runner, detector, 0.5, pipeline)
    val_records = [fs.records[i] for i in va]
    threshold, band = fit_threshold(cfg, y[va], p_val, threshold_view_scores(cfg, fitted, val_records))
    points = fit_recipe_points(cfg, fitted, val_records, y[va], p_val)

    test_records = [fs.records[i] for i in te]
    robustness = robustness_sweep(runner, detector, test_records, y[te]) if cfg.eval.robustness and len(te) else None
    # split.test_fraction=0 (a final model fitted on everything): no test report; the protocol numbers stand for it
    report = write_split_report(cfg, run_dir / "test", test_records, y[te], p_test, threshold, "Test split",
                                robustness=robustness) if len(te) else {"overall": {}}
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
        "threshold_rule": threshold_rule(cfg),
        "sections": {},
    }
    trained_on = [fs.records[i] for i in np.r_[tr, va]]
    card["sections"]["Training data"] = licence_line(trained_on) + training_data_note(cfg)
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
               artefacts=artefacts, operating_points=points)
    _write_predictions(run_dir / "test_predictions.csv", test_records, p_test)

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


def _save_ensemble_member(train_records, val_records, cfg: DictConfig):
    """``save_member(folder, fitted_member)`` for :func:`negate.ensemble.save_ensemble`."""
    from negate.finetune.fit import WEIGHTS_FILE

    def save(folder: Path, member) -> None:
        recipe = member.recipe
        pipeline = dict(recipe.pipeline)
        artefacts = {}
        encoder = dict(pipeline.get("encoder") or {})
        if encoder.get("name") == "finetuned":  # the fine-tuned weights travel inside the member folder
            artefacts[WEIGHTS_FILE] = Path(encoder["weights_dir"]) / encoder["repo_id"]
            pipeline["encoder"] = {**encoder, "weights_dir": MODEL_DIR_TOKEN, "repo_id": WEIGHTS_FILE}
        kept, p_val = recipe.score(val_records)
        y_val = np.array([val_records[i].label for i in kept], dtype=int)
        band = uncertain_band(recipe.threshold, cfg.threshold.uncertain_margin)
        metrics = {"val": binary_metrics(y_val, p_val, recipe.threshold)}
        card = {"families": ", ".join(f.name for f in recipe.runner.families), "data": "see the ensemble's card",
                "split": "the ensemble's", "sections": {"Ensemble member": f"member {member.name!r} of {folder.parent.name}"}}
        save_model(folder, recipe.detector, pipeline, recipe.runner.names, recipe.threshold, band, metrics, card,
                   artefacts=artefacts)

    return save


def train_ensemble(cfg: DictConfig, run_dir: Path) -> dict:
    """``experiment=ensemble``: every member recipe fitted on one split; the split, the threshold rule, the test report
    and the card are the same as for a single recipe; each member is saved as a complete model folder inside the
    ensemble's."""
    from negate.recipe import training_data_note

    records, skipped = load_records(cfg.data)
    write_skipped(run_dir, list(skipped.items()))
    if not records:
        raise InputError(f"no images found under data.path={cfg.data.get('path')}")
    if any(r.label is None for r in records):
        raise ValueError("training data needs a label for every image")
    split = holdout_split(cfg, records)
    tr, va, te = ([records[i] for i in split[k]] for k in ("train", "val", "test"))
    log.info("split: %d train / %d val / %d test images", len(tr), len(va), len(te))
    fitted = fit_ensemble(cfg, tr, va, run_dir / "members")
    kept_va, p_val = fitted.score(va)
    y_va = np.array([va[i].label for i in kept_va], dtype=int)
    points = fit_recipe_points(cfg, fitted, va, y_va, p_val)
    kept_te, p_te = fitted.score(te)
    te_kept = [te[i] for i in kept_te]
    y_te = np.array([r.label for r in te_kept], dtype=int)
    report = write_split_report(cfg, run_dir / "test", te_kept, y_te, p_te, fitted.threshold, "Test split") \
        if te_kept else {"overall": {}}
    metrics = {"val": binary_metrics(y_va, p_val, fitted.threshold), "test": report["overall"],
               "split": {k: int(len(v)) for k, v in split.items()}, "n_skipped": len(skipped)}
    if "camera_fpr" in report:
        metrics["test"]["camera_fpr"] = report["camera_fpr"]["fpr"]

    model_dir = new_model_dir(cfg.paths.models_dir, cfg.get("model_name") or None)
    members = [m.name for m in fitted.members]
    card = {
        "families": ", ".join(f.name for f in fitted.runner.families),
        "data": f"{cfg.data.kind} {cfg.data.path} ({len(records)} images, {sum(r.label for r in records)} synthetic; "
                f"{len(skipped)} skipped)",
        "split": f"group_by={cfg.split.group_by}, val={cfg.split.val_fraction}, test={cfg.split.test_fraction}, seed={cfg.seed}",
        "threshold_rule": threshold_rule(cfg),
        "sections": {"Ensemble": f"{', '.join(members)}: {COMBINE_TEXT[ensemble_combine(cfg)]}, each member a "
                                 "complete model folder below (`member_<name>/`)",
                     "Training data": licence_line(tr + va) + training_data_note(cfg)},
    }
    measured = measured_protocol(cfg)
    if measured:
        card["sections"]["Selection protocol (measured for this recipe)"] = measured
    hashes = fitted.runner.hashes(tr + va)
    seen = training_images_text({"train": hashes[:len(tr)], "val": hashes[len(tr):]})
    save_ensemble(model_dir, fitted, _save_ensemble_member(tr, va, cfg), fitted.threshold, fitted.uncertain, metrics,
                  card, extra_files={TRAINING_IMAGES: seen}, operating_points=points)
    print_metrics_table(metrics, title=f"negate train (ensemble): test split ({len(te)} images)")
    print(f"model folder: {model_dir}")
    metrics["model_dir"] = str(model_dir)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
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
    keys = ("arch", "patch", "train_images", "aligned_pairs", "aligned_local", "val_images", "epochs", "best_val_auroc",
            "seconds")
    return "- " + ", ".join(f"{k}: {meta[k]}" for k in keys if k in meta)


# the figures of a recorded fold-protocol row quoted after its AUROC, in order; a row may lack some (no pairs given)
_FOLD_FIGURES = (("auroc_jpeg75", "after JPEG q75"), ("auroc_downscale0.5", "after 0.5x downscale"),
                 ("auroc_photo", "photo-content rows"), ("camera_fpr", "camera-photo FPR at fold thresholds"),
                 ("camera_fpr_jpeg75", "the same after JPEG q75"), ("camera_fpr_downscale0.5", "after 0.5x downscale"),
                 ("pairs_auroc", "content-matched pairs AUROC"))


def fold_protocol_line(row: dict) -> str:
    """One model-card line for a recorded fold-protocol row; figures the run did not measure are left out."""
    head = f"AUROC {row['auroc']:.3f}"
    notes = []
    if row.get("auroc_ci"):
        notes.append("95% interval {:.3f}-{:.3f} with families and sources redrawn".format(*row["auroc_ci"]))
    if row.get("content_baseline_auroc") is not None:
        notes.append(f"content-only baseline on the same folds {row['content_baseline_auroc']:.3f}")
        if row.get("margin_ci"):
            notes.append("margin {:+.3f}, interval {:+.3f} to {:+.3f}".format(
                round(row["auroc"], 3) - round(row["content_baseline_auroc"], 3), *row["margin_ci"]))  # as printed
    if notes:
        head += f" ({'; '.join(notes)})"
    figures = [head] + [f"{label} {row[key]:.3f}" for key, label in _FOLD_FIGURES if row.get(key) is not None]
    return f"- {row['protocol']} on {row['data']}: {', '.join(figures)}; measured {row['date']} with `{row['command']}`"


def measured_protocol(cfg: DictConfig) -> str:
    """The protocol numbers recorded in ``negate/protocol_results.json`` for this exact recipe, if any: the
    family-held-out and the source-grouped fold protocols (each with its content-only baseline) and
    leave-one-source-out."""
    results_file = PACKAGE_DIR / "protocol_results.json"
    if not results_file.exists():
        return ""
    results = json.loads(results_file.read_text())
    signature = protocol_signature(cfg)
    lines = [fold_protocol_line(fam) for fam in (results.get(f"{signature}:families"), results.get(f"{signature}:sources"))
             if fam]
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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    from negate.errors import exit_on_user_error

    with exit_on_user_error():
        metrics = train(cfg)
    return (metrics["test"] or metrics["val"])["auroc"]  # the value a Hydra sweeper would optimise


if __name__ == "__main__":
    from negate.entry import run

    run("train", sys.argv[1:], main)
