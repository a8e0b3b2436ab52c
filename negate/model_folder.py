"""A trained detector on disk: ``$NEGATE_HOME/models/<YYYYMMDD_HHMMSS>/`` (or ``<model_name>/``).

Contents (no pickle anywhere): the detector's own files (XGBoost UBJ, safetensors), ``model.json`` (detector kind,
parameters, fitted state, decision threshold, uncertain band, ordered feature names, schema version),
``pipeline.yaml`` (the resolved feature pipeline: families, encoder, autoencoder, patches, data normalisation),
``metrics.json``, ``training_images.sha256`` (the sha256 of every training and validation image, so ``evaluate`` can
tell when it is shown images the model was fitted on), ``MODEL_CARD.md`` and ``checksums.sha256``. Loading refuses a folder whose files do not match their
checksums, that lacks a listed file, or whose schema version or feature names differ from what this code computes.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from negate import __version__
from negate.classifiers.base import Detector, load_detector
from negate.operating_points import card_lines

SCHEMA_VERSION = 1
CHECKSUMS = "checksums.sha256"
MODEL_JSON = "model.json"
PIPELINE_YAML = "pipeline.yaml"
METRICS_JSON = "metrics.json"
CARD = "MODEL_CARD.md"
TRAINING_IMAGES = "training_images.sha256"


class ModelFolderError(Exception):
    """The model folder is missing, tampered with, truncated or made by an incompatible version."""


@dataclass
class LoadedModel:
    folder: Path
    detector: Detector
    pipeline: dict
    feature_names: list[str]
    threshold: float
    uncertain: tuple[float, float]
    info: dict

    def verdicts(self, prob) -> list[str]:
        lo, hi = self.uncertain
        return ["uncertain" if lo <= p < hi else ("synthetic" if p >= self.threshold else "human") for p in prob]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def new_model_dir(models_root: str | Path, name: str | None = None) -> Path:
    """Create a new, empty model folder: ``<root>/<name>``, or ``<root>/<YYYYMMDD_HHMMSS>[_n]``. Creation is atomic
    (``mkdir`` without ``exist_ok``), so two trainings finishing in the same second never share a folder."""
    root = Path(models_root)
    root.mkdir(parents=True, exist_ok=True)
    if name:
        if Path(name).name != name or name.startswith("."):
            raise ModelFolderError(f"model_name must be a plain folder name, got {name!r}")
        try:
            (root / name).mkdir()
        except FileExistsError:
            raise ModelFolderError(f"a model named {name!r} already exists in {root}: choose another model_name") from None
        return root / name
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    for n in range(10_000):
        folder = root / (stamp if n == 0 else f"{stamp}_{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise ModelFolderError(f"cannot create a new model folder in {root}")


def save_model(
    folder: Path,
    detector: Detector,
    pipeline: dict,
    feature_names: list[str],
    threshold: float,
    uncertain: tuple[float, float],
    metrics: dict,
    card: dict,
    extra_files: dict[str, str] | None = None,
    artefacts: dict[str, Path] | None = None,
    operating_points: dict[str, dict] | None = None,
) -> Path:
    """Write every artefact, then the checksums, then the card that lists them. ``extra_files``: name -> text
    (e.g. ``training_images.sha256``); ``artefacts``: name -> a file to copy into the folder (e.g. fine-tuned
    network weights the pipeline loads from ``@model``); ``operating_points``: named thresholds beside the default
    (:mod:`negate.operating_points`)."""
    import shutil

    folder = Path(folder)
    files = list(detector.save(folder))
    for name, text in (extra_files or {}).items():
        (folder / name).write_text(text)
        files.append(name)
    for name, source in (artefacts or {}).items():
        shutil.copyfile(source, folder / name)
        files.append(name)
    model_info = {
        "schema_version": SCHEMA_VERSION,
        "negate_version": __version__,
        "detector": {"kind": detector.kind, "params": detector.params(), "state": detector.state()},
        "threshold": float(threshold),
        "uncertain": [float(uncertain[0]), float(uncertain[1])],
        "feature_names": list(feature_names),
    }
    if operating_points:
        model_info["operating_points"] = operating_points
    (folder / MODEL_JSON).write_text(json.dumps(model_info, indent=1, sort_keys=True))
    (folder / PIPELINE_YAML).write_text(yaml.safe_dump(pipeline, sort_keys=True))
    (folder / METRICS_JSON).write_text(json.dumps(metrics, indent=1, sort_keys=True, default=float))
    files += [MODEL_JSON, PIPELINE_YAML, METRICS_JSON]
    sums = {name: _sha256(folder / name) for name in sorted(files)}
    (folder / CHECKSUMS).write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    (folder / CARD).write_text(_card_text(folder, detector, model_info, metrics, card, sums))
    return folder


def _card_text(folder: Path, detector: Detector, info: dict, metrics: dict, card: dict, sums: dict) -> str:
    import numpy
    import torch
    import xgboost

    lines = [
        f"# negate model {folder.name}",
        "",
        f"- date: {datetime.now().isoformat(timespec='seconds')}",
        f"- detector: {detector.kind} {json.dumps(detector.params(), sort_keys=True)}",
        f"- features: {len(info['feature_names'])} columns from {card.get('families', '?')}",
        f"- data: {card.get('data', '?')}",
        f"- split: {card.get('split', '?')}",
        f"- decision threshold: {info['threshold']:.4f} (chosen on {card.get('threshold_rule', 'the validation split')});"
        f" uncertain band [{info['uncertain'][0]:.4f}, {info['uncertain'][1]:.4f})",
        *card_lines(info.get("operating_points") or {}),
        f"- versions: negate {__version__}, python {platform.python_version()}, torch {torch.__version__}, "
        f"xgboost {xgboost.__version__}, numpy {numpy.__version__}",
        "",
        "## Test metrics (scored once, never used for fitting, early stopping or threshold)",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for name, value in metrics.get("test", {}).items():
        if isinstance(value, (int, float)):
            lines.append(f"| {name} | {value:.4f} |")
    for title, text in card.get("sections", {}).items():
        lines += ["", f"## {title}", "", text]
    lines += ["", "## Artefacts (sha256, verified on load)", "", "| file | sha256 |", "| --- | --- |"]
    lines += [f"| {name} | `{digest}` |" for name, digest in sums.items()]
    return "\n".join(lines) + "\n"


def resolve_ckpt(ckpt: str | Path, models_root) -> Path:
    """Kept for callers of earlier versions: see :func:`negate.registry.resolve_ckpt`."""
    from negate.registry import resolve_ckpt as resolve

    return resolve(ckpt, models_root)


def verify_checksums(folder: Path) -> dict[str, str]:
    sums_path = folder / CHECKSUMS
    if not sums_path.is_file():
        raise ModelFolderError(f"{folder} is not a negate model folder (no {CHECKSUMS})")
    sums = {}
    for line in sums_path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if not name or len(digest) != 64 or "/" in name or name.startswith("."):
            raise ModelFolderError(f"{folder / CHECKSUMS} is malformed: {line!r}")
        sums[name] = digest
    for name in (MODEL_JSON, PIPELINE_YAML):
        if name not in sums:
            raise ModelFolderError(f"{folder}: {name} is not covered by {CHECKSUMS}")
    for name, digest in sums.items():
        path = folder / name
        if not path.is_file():
            raise ModelFolderError(f"{folder}: {name} is missing")
        actual = _sha256(path)
        if actual != digest:
            raise ModelFolderError(f"{folder}: {name} does not match its checksum (tampered or truncated); refusing to load")
    return sums


def load_model(folder: str | Path, expected_names=None) -> LoadedModel:
    """Verify and load. ``expected_names(pipeline) -> list[str]`` recomputes feature names with the current code."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"model folder not found: {folder}")
    verify_checksums(folder)
    try:
        info = json.loads((folder / MODEL_JSON).read_text())
        pipeline = yaml.safe_load((folder / PIPELINE_YAML).read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ModelFolderError(f"{folder}: unreadable model metadata ({err})") from None
    if not isinstance(info, dict) or not isinstance(pipeline, dict):
        raise ModelFolderError(f"{folder}: {MODEL_JSON} and {PIPELINE_YAML} must each hold a mapping")
    if info.get("schema_version") != SCHEMA_VERSION:
        raise ModelFolderError(
            f"{folder} was written with feature-schema version {info.get('schema_version')}, this negate reads "
            f"{SCHEMA_VERSION}: retrain the model with this version"
        )
    missing = [k for k in ("feature_names", "detector", "threshold", "uncertain") if k not in info]
    if missing:
        raise ModelFolderError(f"{folder}: {MODEL_JSON} lacks {', '.join(missing)}")
    names = info["feature_names"]
    if expected_names is not None:
        current = expected_names(pipeline)
        if current != names:
            diff = sorted(set(current) ^ set(names))[:5]
            raise ModelFolderError(
                f"{folder}: its feature names differ from what this code computes for its pipeline "
                f"(e.g. {diff or 'same names, other order'}); retrain the model with this version"
            )
    det = info["detector"]
    try:
        detector = load_detector(folder, det["kind"], det["params"], det["state"])
    except (KeyError, TypeError, ValueError, OSError) as err:  # xgboost's XGBoostError is a ValueError
        raise ModelFolderError(f"{folder}: cannot load its detector ({type(err).__name__}: {err})".splitlines()[0]) from None
    return LoadedModel(folder, detector, pipeline, names, info["threshold"], tuple(info["uncertain"]), info)


def load_checked_model(ckpt: str, roots, allow_remote_code: bool = False) -> tuple[LoadedModel, list]:
    """Load a model folder and rebuild its feature families, refusing any mismatch with the current code.

    ``roots``: where ``latest`` and bare names are looked up (see :mod:`negate.registry`). A shared folder must not
    switch on hub remote code by itself: a saved ``trust_remote_code: true`` is refused unless the user passes
    ``allow_remote_code=true``.
    """
    from hydra.errors import HydraException

    from negate.data.dataset import PatchConfig
    from negate.pipeline import build_families, feature_names
    from negate.registry import resolve_ckpt as resolve

    built: dict = {}
    folder = resolve(ckpt, roots)
    from negate.ensemble import is_ensemble_folder, load_ensemble

    if is_ensemble_folder(folder):
        return load_ensemble(folder, lambda member: load_checked_model(str(member), roots, allow_remote_code))

    def expected(pipeline: dict) -> list[str]:
        if (pipeline.get("encoder") or {}).get("trust_remote_code") and not allow_remote_code:
            raise ModelFolderError(f"{folder}: its encoder runs remote code from the hub (trust_remote_code: true); "
                                   "pass allow_remote_code=true if you trust that repository")
        try:
            families = build_families(pipeline, model_dir=str(folder))
            PatchConfig(**pipeline["patches"])
            int(pipeline["max_pixels"])
            str(pipeline["reencode"])
        except (KeyError, TypeError, ValueError, AttributeError, HydraException) as err:
            raise ModelFolderError(f"{folder}: its pipeline cannot be built by this code ({type(err).__name__}: "
                                   f"{' '.join(str(err).split())})") from None
        versions = {f.name: str(f.version) for f in families}
        saved = pipeline.get("family_versions", {})
        if saved and saved != versions:
            raise ModelFolderError(f"{folder}: feature code changed since this model was trained (versions {saved} -> "
                                   f"{versions}); retrain the model with this version")
        built["families"] = families
        return feature_names(pipeline, families)

    model = load_model(folder, expected_names=expected)
    return model, built["families"]


def read_training_images(folder: Path) -> dict[str, str] | None:
    """``{sha256: split}`` of the images a model was trained and validated on; None for folders written before this
    list existed. Read after :func:`load_model` verified the folder's checksums."""
    path = Path(folder) / TRAINING_IMAGES
    if not path.is_file():
        return None
    out = {}
    for line in path.read_text().splitlines():
        digest, _, split = line.partition("  ")
        if len(digest) == 64:
            out[digest] = split.strip() or "train"
    return out


def training_images_text(hashes_by_split: dict[str, list[str | None]]) -> str:
    """``<sha256>  <split>`` per line, sorted, one line per distinct image."""
    seen: dict[str, str] = {}
    for split, hashes in hashes_by_split.items():
        for h in hashes:
            if h:
                seen.setdefault(h, split)
    return "".join(f"{h}  {s}\n" for h, s in sorted(seen.items()))
