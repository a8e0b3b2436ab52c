"""Standardisation and optional PCA, fitted with scikit-learn, applied with numpy, stored as safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler


class Preprocessor:
    """``x -> (x - mean) / scale`` then, if ``pca_components`` > 0, projection on the principal axes."""

    def __init__(self, standardise: bool = True, pca_components: int | float = 0, seed: int = 0):
        self.standardise = standardise
        self.pca_components = pca_components
        self.seed = seed
        self.arrays: dict[str, np.ndarray] = {}

    @property
    def active(self) -> bool:
        return self.standardise or bool(self.pca_components)

    def fit(self, X: np.ndarray) -> "Preprocessor":
        X = np.asarray(X, dtype=np.float64)
        if self.standardise or self.pca_components:
            scaler = StandardScaler().fit(X)
            self.arrays["mean"] = scaler.mean_.astype(np.float32)
            self.arrays["scale"] = scaler.scale_.astype(np.float32)
            X = scaler.transform(X)
        if self.pca_components:
            n = self.pca_components
            n = min(int(n), *X.shape) if n >= 1 else float(n)
            pca = PCA(n_components=n, random_state=self.seed, svd_solver="full").fit(X)
            self.arrays["pca_mean"] = pca.mean_.astype(np.float32)
            self.arrays["pca_components"] = pca.components_.astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if "mean" in self.arrays:
            X = (X - self.arrays["mean"]) / self.arrays["scale"]
        if "pca_components" in self.arrays:
            X = (X - self.arrays["pca_mean"]) @ self.arrays["pca_components"].T
        return X.astype(np.float32)

    def save(self, path: Path) -> None:
        save_file({k: np.ascontiguousarray(v) for k, v in self.arrays.items()}, str(path))

    def load_arrays(self, path: Path) -> "Preprocessor":
        self.arrays = dict(load_file(str(path)))
        return self
