"""Logistic regression baseline on standardised features (optionally PCA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import LogisticRegression

from negate.classifiers.base import Detector, check_X, check_y, register_detector
from negate.classifiers.preprocess import Preprocessor

WEIGHTS_FILE = "logreg.safetensors"
PREPROCESS_FILE = "preprocess.safetensors"


@register_detector("logreg")
class LogRegDetector(Detector):

    def __init__(self, C: float = 0.1, max_iter: int = 5000, balance_classes: bool = True, pca_components: int | float = 0, seed: int = 0):
        self._params = dict(C=C, max_iter=max_iter, balance_classes=balance_classes, pca_components=pca_components, seed=seed)
        self.preprocess = Preprocessor(standardise=True, pca_components=pca_components, seed=seed)
        self.coef: np.ndarray | None = None
        self.intercept: np.ndarray | None = None

    def params(self) -> dict:
        return dict(self._params)

    def fit(self, X, y, X_val=None, y_val=None) -> "LogRegDetector":
        X = check_X(X)
        y = check_y(y, len(X))
        self.n_features_ = X.shape[1]
        Xt = self.preprocess.fit(X).transform(X)
        model = LogisticRegression(
            C=self._params["C"], max_iter=self._params["max_iter"], random_state=self._params["seed"],
            class_weight="balanced" if self._params["balance_classes"] else None,
        ).fit(Xt, y)
        self.coef = model.coef_[0].astype(np.float32)
        self.intercept = model.intercept_.astype(np.float32)
        return self

    def predict_proba(self, X) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("LogRegDetector is not fitted")
        X = self.preprocess.transform(check_X(X, self.n_features_))
        logit = X.astype(np.float64) @ self.coef.astype(np.float64) + float(self.intercept[0])
        p = 1.0 / (1.0 + np.exp(-logit))
        return np.stack([1 - p, p], axis=1)

    def save(self, folder: Path) -> list[str]:
        save_file({"coef": self.coef, "intercept": self.intercept}, str(Path(folder) / WEIGHTS_FILE))
        self.preprocess.save(Path(folder) / PREPROCESS_FILE)
        return [WEIGHTS_FILE, PREPROCESS_FILE]

    @classmethod
    def load(cls, folder: Path, params: dict, state: dict) -> "LogRegDetector":
        det = cls(**params)
        det.n_features_ = state["n_features"]
        weights = load_file(str(Path(folder) / WEIGHTS_FILE))
        det.coef, det.intercept = weights["coef"], weights["intercept"]
        det.preprocess.load_arrays(Path(folder) / PREPROCESS_FILE)
        return det
