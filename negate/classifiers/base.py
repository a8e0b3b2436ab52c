"""Shared detector plumbing: input validation and the kind -> class table used when loading a model folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def check_X(X, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"expected {n_features} features, got {X.shape[1]}: the feature set differs from the fitted one")
    if not np.isfinite(X).all():
        raise ValueError("feature matrix contains NaN or inf")
    return X


def check_y(y, n: int) -> np.ndarray:
    y = np.asarray(y).astype(int)
    if y.shape != (n,):
        raise ValueError(f"expected {n} labels, got shape {y.shape}")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 0 (real) or 1 (synthetic)")
    if len(np.unique(y)) < 2:
        raise ValueError("training data holds only one class; a detector needs real and synthetic images")
    return y


class Detector:
    """Base class. Subclasses set ``kind`` and implement fit / predict_proba / save / load."""

    kind = "base"
    n_features_: int | None = None

    def fit(self, X, y, X_val=None, y_val=None) -> "Detector":
        raise NotImplementedError

    def predict_proba(self, X) -> np.ndarray:
        raise NotImplementedError

    def params(self) -> dict:
        """JSON-serialisable constructor arguments (written to model.json)."""
        raise NotImplementedError

    def save(self, folder: Path) -> list[str]:
        """Write artefacts into ``folder``; return their file names."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, params: dict, state: dict) -> "Detector":
        raise NotImplementedError

    def state(self) -> dict:
        """Small JSON-serialisable fitted state (e.g. n_features, best iteration)."""
        return {"n_features": self.n_features_}


def detector_classes() -> dict[str, type[Detector]]:
    from negate.classifiers.logreg import LogRegDetector
    from negate.classifiers.xgboost import XGBoostDetector
    from negate.classifiers.zero_shot import ZeroShotDetector

    return {c.kind: c for c in (XGBoostDetector, LogRegDetector, ZeroShotDetector)}


def load_detector(folder: Path, kind: str, params: dict, state: dict) -> Detector:
    classes = detector_classes()
    if kind not in classes:
        raise ValueError(f"unknown detector kind {kind!r} in model folder {folder}; known: {sorted(classes)}")
    return classes[kind].load(Path(folder), params, state)
