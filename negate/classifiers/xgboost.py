"""Gradient-boosted trees (XGBoost) with optional standardise+PCA; early stopping on the validation split only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost as xgb

from negate.classifiers.base import Detector, check_X, check_y, register_detector
from negate.classifiers.preprocess import Preprocessor

MODEL_FILE = "model.ubj"
PREPROCESS_FILE = "preprocess.safetensors"


@register_detector("xgboost")
class XGBoostDetector(Detector):

    def __init__(
        self,
        n_estimators: int = 400,
        max_depth: int = 4,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.5,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int | None = 40,
        balance_classes: bool = True,
        pca_components: int | float = 0,
        seed: int = 0,
        n_jobs: int = 2,
    ):
        self._params = dict(
            n_estimators=n_estimators, max_depth=max_depth, learning_rate=learning_rate, subsample=subsample,
            colsample_bytree=colsample_bytree, min_child_weight=min_child_weight, reg_lambda=reg_lambda,
            early_stopping_rounds=early_stopping_rounds, balance_classes=balance_classes,
            pca_components=pca_components, seed=seed, n_jobs=n_jobs,
        )
        self.preprocess = Preprocessor(standardise=bool(pca_components), pca_components=pca_components, seed=seed)
        self.model: xgb.XGBClassifier | None = None

    def params(self) -> dict:
        return dict(self._params)

    def _make_model(self, y: np.ndarray | None, with_val: bool) -> xgb.XGBClassifier:
        p = self._params
        weight = 1.0
        if y is not None and p["balance_classes"]:
            weight = float((y == 0).sum()) / max(1.0, float((y == 1).sum()))
        return xgb.XGBClassifier(
            n_estimators=p["n_estimators"], max_depth=p["max_depth"], learning_rate=p["learning_rate"],
            subsample=p["subsample"], colsample_bytree=p["colsample_bytree"], min_child_weight=p["min_child_weight"],
            reg_lambda=p["reg_lambda"], scale_pos_weight=weight, tree_method="hist", random_state=p["seed"],
            n_jobs=p["n_jobs"], eval_metric="logloss",
            early_stopping_rounds=p["early_stopping_rounds"] if with_val else None,
        )

    def fit(self, X, y, X_val=None, y_val=None) -> "XGBoostDetector":
        X = check_X(X)
        y = check_y(y, len(X))
        self.n_features_ = X.shape[1]
        Xt = self.preprocess.fit(X).transform(X)
        with_val = X_val is not None and len(X_val) > 0 and self._params["early_stopping_rounds"]
        self.model = self._make_model(y, bool(with_val))
        if with_val:
            Xv = self.preprocess.transform(check_X(X_val, self.n_features_))
            self.model.fit(Xt, y, eval_set=[(Xv, np.asarray(y_val).astype(int))], verbose=False)
        else:
            self.model.fit(Xt, y, verbose=False)
        return self

    def predict_proba(self, X) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("XGBoostDetector is not fitted")
        X = self.preprocess.transform(check_X(X, self.n_features_))
        return self.model.predict_proba(X)

    def feature_importance(self, names: list[str]) -> dict[str, float]:
        """Gain per input feature (only meaningful without PCA)."""
        gain = self.model.get_booster().get_score(importance_type="gain")
        return {names[int(k[1:])]: v for k, v in gain.items()} if not self._params["pca_components"] else gain

    def state(self) -> dict:
        return {"n_features": self.n_features_}

    def save(self, folder: Path) -> list[str]:
        self.model.save_model(str(Path(folder) / MODEL_FILE))
        files = [MODEL_FILE]
        if self.preprocess.arrays:
            self.preprocess.save(Path(folder) / PREPROCESS_FILE)
            files.append(PREPROCESS_FILE)
        return files

    @classmethod
    def load(cls, folder: Path, params: dict, state: dict) -> "XGBoostDetector":
        det = cls(**params)
        det.n_features_ = state["n_features"]
        det.model = det._make_model(None, with_val=False)
        det.model.load_model(str(Path(folder) / MODEL_FILE))
        if (Path(folder) / PREPROCESS_FILE).exists():
            det.preprocess.load_arrays(Path(folder) / PREPROCESS_FILE)
        return det
