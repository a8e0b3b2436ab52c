"""Shared detector plumbing: the base class, input validation, and building/loading through the registry.

A detector module registers its class with ``@register_detector("<kind>")``; ``configs/classifier/<option>.yaml``
selects it with ``kind: <kind>`` plus constructor arguments. The kind is also what a model folder's ``model.json``
records, so :func:`load_detector` finds the class again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from negate.plugins import CLASSIFIERS

_D = TypeVar("_D", bound=type)


def register_detector(kind: str) -> Callable[[_D], _D]:
    """Class decorator: make a detector available as ``classifier: {kind: <kind>}`` and loadable from model folders."""
    return CLASSIFIERS.register(kind, name_attr="kind")


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

    def bind(self, feature_names: list[str]) -> None:
        """Told the names of the feature columns before ``fit`` (a detector that scores one column by name needs
        them); ignored by default."""


def build_detector(classifier_cfg, feature_names: list[str] | None = None) -> Detector:
    """The detector a ``classifier`` config selects (``kind`` + constructor arguments), bound to the feature columns
    it will see when ``feature_names`` is given."""
    detector = CLASSIFIERS.build(classifier_cfg)
    if feature_names is not None:
        detector.bind(list(feature_names))
    return detector


def load_detector(folder: Path, kind: str, params: dict, state: dict) -> Detector:
    if kind not in CLASSIFIERS:
        raise ValueError(f"unknown detector kind {kind!r} in model folder {folder}; known: {CLASSIFIERS.names()}")
    return CLASSIFIERS.get(kind).load(Path(folder), params, state)
