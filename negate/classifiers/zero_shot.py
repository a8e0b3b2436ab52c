"""Training-free detection: one score column (e.g. the WaRPAD similarity) is the detector.

Nothing about the images is learned; ``fit`` only maps the score to a probability with a monotone 1-D logistic
calibration (so thresholds and calibration metrics mean the same as for trained models). AUROC is that of the raw
score, oriented by ``higher_is_synthetic``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from negate.classifiers.base import Detector, check_X, check_y, register_detector


@register_detector("zero_shot")
class ZeroShotDetector(Detector):

    def __init__(self, score: str = "warpad.score.mean", higher_is_synthetic: bool = False, calibrate_on: str = "train"):
        if calibrate_on not in ("train", "val"):
            raise ValueError(f"calibrate_on must be 'train' or 'val', got {calibrate_on!r}")
        self._params = dict(score=score, higher_is_synthetic=higher_is_synthetic, calibrate_on=calibrate_on)
        self.column: int | None = None
        self.a, self.b = 1.0, 0.0

    def params(self) -> dict:
        return dict(self._params)

    def bind(self, names: list[str]) -> "ZeroShotDetector":
        """Find the score column among the feature names."""
        if self._params["score"] not in names:
            raise ValueError(
                f"zero-shot score {self._params['score']!r} is not among the extracted features; "
                f"select its family (e.g. encoder=effnet_lite0 for warpad.*). Known: {names[:8]}..."
            )
        self.column = names.index(self._params["score"])
        self.n_features_ = len(names)
        return self

    def _score(self, X: np.ndarray) -> np.ndarray:
        s = X[:, self.column].astype(np.float64)
        return s if self._params["higher_is_synthetic"] else -s

    def fit(self, X, y, X_val=None, y_val=None) -> "ZeroShotDetector":
        if self.column is None:
            raise RuntimeError("call bind(feature_names) before fit")
        if self._params.get("calibrate_on") == "val" and X_val is not None and len(set(np.asarray(y_val).tolist())) == 2:
            X, y = X_val, y_val  # a fine-tuned network's training scores are overconfident: calibrate on held-out
        X = check_X(X, self.n_features_)
        y = check_y(y, len(X))
        s = self._score(X)
        self.centre, self.spread = float(np.median(s)), float(np.std(s) or 1.0)
        cal = LogisticRegression(C=1e4).fit(((s - self.centre) / self.spread)[:, None], y)
        self.a, self.b = float(max(cal.coef_[0, 0], 1e-6)), float(cal.intercept_[0])  # stays monotone increasing
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = check_X(X, self.n_features_)
        z = self.a * (self._score(X) - self.centre) / self.spread + self.b
        p = 1.0 / (1.0 + np.exp(-z))
        return np.stack([1 - p, p], axis=1)

    def state(self) -> dict:
        return {"n_features": self.n_features_, "column": self.column, "a": self.a, "b": self.b,
                "centre": self.centre, "spread": self.spread}

    def save(self, folder: Path) -> list[str]:
        return []  # the whole fitted state is small and lives in model.json

    @classmethod
    def load(cls, folder: Path, params: dict, state: dict) -> "ZeroShotDetector":
        det = cls(**params)
        det.n_features_, det.column = state["n_features"], state["column"]
        det.a, det.b, det.centre, det.spread = state["a"], state["b"], state["centre"], state["spread"]
        return det
