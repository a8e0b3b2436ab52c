"""``infer``: score a file or a folder with a saved model folder."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
from hydra.errors import HydraException
from omegaconf import DictConfig

from negate.data.records import ImageRecord
from negate.data.scan import scan_images
from negate.model_folder import LoadedModel, ModelFolderError, load_model, resolve_ckpt
from negate.pipeline import FeatureRunner, build_families, feature_names
from negate.tables import print_predictions

log = logging.getLogger(__name__)

OUTPUTS = ("table", "csv", "json")


class NothingScoredError(RuntimeError):
    """No input could be scored."""


def load_checked_model(ckpt: str, models_dir: str, allow_remote_code: bool = False) -> tuple[LoadedModel, list]:
    """Load a model folder and rebuild its feature families, refusing any mismatch with the current code.

    A shared folder must not switch on hub remote code by itself: a saved ``trust_remote_code: true`` is refused
    unless the user passes ``allow_remote_code=true``.
    """
    built: dict = {}
    folder = resolve_ckpt(ckpt, models_dir)

    def expected(pipeline: dict) -> list[str]:
        if (pipeline.get("encoder") or {}).get("trust_remote_code") and not allow_remote_code:
            raise ModelFolderError(f"{folder}: its encoder runs remote code from the hub (trust_remote_code: true); "
                                   "pass allow_remote_code=true if you trust that repository")
        try:
            families = build_families(pipeline, model_dir=str(folder))
        except (KeyError, TypeError, ValueError, HydraException) as err:
            raise ModelFolderError(f"{folder}: its pipeline cannot be built by this code ({type(err).__name__}: "
                                   f"{err})".splitlines()[0]) from None
        versions = {f.name: str(f.version) for f in families}
        saved = pipeline.get("family_versions", {})
        if saved and saved != versions:
            raise ModelFolderError(f"{folder}: feature code changed since this model was trained (versions {saved} -> "
                                   f"{versions}); retrain the model with this version")
        built["families"] = families
        return feature_names(pipeline, families)

    model = load_model(folder, expected_names=expected)
    return model, built["families"]


def collect_inputs(path: str | Path) -> tuple[list[ImageRecord], list[tuple[str, str]]]:
    path = Path(path)
    if path.is_dir():
        result = scan_images(path)
        return [ImageRecord(str(p)) for p in result.files], [(str(p), r) for p, r in result.skipped]
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"no such file or folder: {path}")
    return [ImageRecord(str(path))], []


def predict(cfg: DictConfig) -> tuple[list[dict], LoadedModel]:
    """One row per input: path, prob_synthetic, verdict, error."""
    model, families = load_checked_model(cfg.ckpt, cfg.paths.models_dir, cfg.get("allow_remote_code", False))
    records, skipped = collect_inputs(cfg.path)
    runner = FeatureRunner(model.pipeline, cfg, families)
    kept, table = runner.features(records) if records else ([], None)
    prob = model.detector.predict_proba(table.X)[:, 1] if kept else np.zeros(0)
    verdicts = model.verdicts(prob)
    rows = [{"path": records[i].path, "prob_synthetic": float(p), "verdict": v, "error": ""}
            for i, p, v in zip(kept, prob, verdicts)]
    failed = skipped + (runner.failures(records, table, kept) if records else [])
    rows += [{"path": p, "prob_synthetic": None, "verdict": "error", "error": reason} for p, reason in failed]
    return rows, model


def write_rows(rows: list[dict], fmt: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(rows, indent=1))
        return
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "prob_synthetic", "verdict", "error"])
        writer.writeheader()
        writer.writerows(rows)


def infer(cfg: DictConfig, run_dir: Path) -> list[dict]:
    if cfg.output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {cfg.output!r}")
    rows, model = predict(cfg)
    print_predictions(rows, limit=cfg.get("print_limit"))
    if cfg.output != "table":
        target = Path(cfg.output_file) if cfg.get("output_file") else run_dir / f"predictions.{cfg.output}"
        write_rows(rows, cfg.output, target)
        print(f"wrote {len(rows)} rows to {target}")
    errors = [r for r in rows if r["error"]]
    scored = len(rows) - len(errors)
    print(f"model {model.folder}: {scored} scored, {len(errors)} failed "
          f"(threshold {model.threshold:.3f}, uncertain band [{model.uncertain[0]:.3f}, {model.uncertain[1]:.3f}))")
    if scored == 0:
        raise NothingScoredError(f"none of the {len(rows)} inputs under {cfg.path} could be scored"
                                 + (f"; first error: {errors[0]['path']}: {errors[0]['error']}" if errors else ""))
    return rows
