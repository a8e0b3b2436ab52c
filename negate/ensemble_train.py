"""``negate train experiment=ensemble``: fit every member recipe on one split, save an ensemble model folder.

The split, the threshold rule, the test report and the card are the same as for a single recipe
(:func:`negate.training.train`); each member is saved as a complete model folder inside the ensemble's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from negate.data.split import split_indices
from negate.ensemble import fit_ensemble, save_ensemble
from negate.errors import InputError
from negate.evaluation.metrics import binary_metrics
from negate.evaluation.report import write_report
from negate.model_folder import TRAINING_IMAGES, new_model_dir, save_model, training_images_text
from negate.pipeline import MODEL_DIR_TOKEN, load_records
from negate.thresholds import uncertain_band

log = logging.getLogger(__name__)


def _save_member(train_records, val_records, cfg: DictConfig):
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
    from negate.tables import print_metrics_table
    from negate.training import camera_rows, licence_line, measured_protocol, write_skipped

    records, skipped = load_records(cfg.data)
    write_skipped(run_dir, list(skipped.items()))
    if not records:
        raise InputError(f"no images found under data.path={cfg.data.get('path')}")
    if any(r.label is None for r in records):
        raise ValueError("training data needs a label for every image")
    groups = [getattr(r, cfg.split.group_by) for r in records] if cfg.split.group_by else None
    split = split_indices([r.label for r in records], groups, cfg.split.val_fraction, cfg.split.test_fraction,
                          cfg.seed)
    tr, va, te = ([records[i] for i in split[k]] for k in ("train", "val", "test"))
    log.info("split: %d train / %d val / %d test images", len(tr), len(va), len(te))
    fitted = fit_ensemble(cfg, tr, va, run_dir / "members")
    band = uncertain_band(fitted.threshold, cfg.threshold.uncertain_margin)
    kept_va, p_val = fitted.score(va)
    y_va = np.array([va[i].label for i in kept_va], dtype=int)
    kept_te, p_te = fitted.score(te)
    y_te = np.array([te[i].label for i in kept_te], dtype=int)
    te_kept = [te[i] for i in kept_te]
    report = write_report(run_dir / "test", y_te, p_te, fitted.threshold,
                          {"generator": [r.generator for r in te_kept], "source": [r.source for r in te_kept],
                           "path": [r.path for r in te_kept]}, "Test split", n_boot=cfg.eval.n_boot, seed=cfg.seed,
                          camera=camera_rows(cfg, te_kept)) if len(te_kept) else {"overall": {}}
    metrics = {"val": binary_metrics(y_va, p_val, fitted.threshold), "test": report["overall"],
               "split": {k: int(len(v)) for k, v in split.items()}, "n_skipped": len(skipped)}
    if "camera_fpr" in report:
        metrics["test"]["camera_fpr"] = report["camera_fpr"]["fpr"]

    model_dir = new_model_dir(cfg.paths.models_dir, cfg.get("model_name") or None)
    names = {m.name: m.recipe.runner.names for m in fitted.members}
    test_line = ", ".join(f"{k} {v:.4f}" for k, v in metrics["test"].items() if isinstance(v, (int, float)))
    card = [f"- ensemble of {', '.join(names)}: mean of the members' logits (equal weights), each member a complete "
            "model folder below (`member_<name>/`)",
            f"- data: {cfg.data.kind} {cfg.data.path} ({len(records)} images, {sum(r.label for r in records)} synthetic)",
            f"- split: group_by={cfg.split.group_by}, val={cfg.split.val_fraction}, test={cfg.split.test_fraction}, "
            f"seed={cfg.seed}",
            f"- decision threshold: {fitted.threshold:.4f} ({cfg.threshold.method}, target FPR "
            f"{cfg.threshold.target_fpr}, on the validation split); uncertain band [{band[0]:.4f}, {band[1]:.4f})",
            f"- test split: {test_line or 'none (split.test_fraction=0: the protocol numbers stand for it)'}",
            "", "## Training data", "", licence_line(tr + va)]
    measured = measured_protocol(cfg)
    if measured:
        card += ["", "## Selection protocol (measured for this recipe)", "", measured]
    hashes = fitted.runner.hashes(tr + va)
    seen = training_images_text({"train": hashes[:len(tr)], "val": hashes[len(tr):]})
    save_ensemble(model_dir, fitted, names, _save_member(tr, va, cfg), fitted.threshold, band, metrics, card,
                  extra_files={TRAINING_IMAGES: seen})
    print_metrics_table(metrics, title=f"negate train (ensemble): test split ({len(te)} images)")
    print(f"model folder: {model_dir}")
    metrics["model_dir"] = str(model_dir)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return metrics
