"""A dataset as feature rows: what ``train``, ``evaluate``, ``pretrain`` and the protocol's cross-validation fit and
score. :func:`load_feature_set` extracts (through the cache) the features of the configured data, listing every image
that cannot be used in ``skipped.csv``; :func:`make_detector` builds the configured classifier for those features;
:func:`augmented_rows` adds seeded augmented views of chosen rows.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from negate.classifiers import build_detector
from negate.data.index import file_format
from negate.data.patches import seed_from_key
from negate.data.records import ImageRecord
from negate.errors import InputError
from negate.pipeline import FeatureRunner, compose_view, load_records
from negate.plugins import AUGMENTATIONS

log = logging.getLogger(__name__)


def record_meta(records: list[ImageRecord]) -> dict[str, list]:
    """The report's metadata columns of ``records``: generator, source, file format and path."""
    return {"generator": [r.generator for r in records], "source": [r.source for r in records],
            "format": [file_format(r.path) for r in records], "path": [r.path for r in records]}


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
        return record_meta([self.records[i] for i in rows])


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


def augmented_views(cfg: DictConfig, runner: FeatureRunner, records: list[ImageRecord], base_view: str = ""):
    """``augment.views`` seeded random views (JPEG, downscale, crop, blur) of ``records``, each followed by
    ``base_view``. Returns ``(X_aug, owner)``, ``owner`` indexing ``records``, or None when augmentation is off;
    cached like any view, so sweeps pay for augmentation once."""
    augmentation = AUGMENTATIONS.build(cfg.augment)
    if augmentation.views <= 0 or not records:
        return None
    hashes = runner.hashes(records)
    X_parts, owners = [], []
    for v in range(augmentation.views):
        attacks = [augmentation.view(seed_from_key(f"{h}|aug{v}|{cfg.seed}")) for h in hashes]
        attacks = [compose_view("" if a == "none" else a, base_view) for a in attacks]
        kept, table = runner.features(records, attacks)
        X_parts.append(table.X)
        owners.append(np.asarray(kept, dtype=int))
    return np.concatenate(X_parts), np.concatenate(owners)


def augmented_rows(cfg: DictConfig, runner: FeatureRunner, fs: FeatureSet, rows: np.ndarray):
    """:func:`augmented_views` of the feature set's ``rows``: ``(X_aug, owner_row, y_aug)``."""
    out = augmented_views(cfg, runner, [fs.records[i] for i in rows])
    if out is None:
        return None
    owner = np.asarray(rows)[out[1]]
    return out[0], owner, fs.y[owner]
