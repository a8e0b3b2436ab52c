"""Decision thresholds, chosen on validation predictions only.

``fpr``: the lowest threshold whose false-positive rate on validation reals is at most ``target_fpr`` — flagging a
real photo as synthetic is the costly error, so it is bounded first. ``youden``: maximises TPR - FPR. ``fixed``: 0.5.
The uncertain band is ``[t - margin, t + margin)``, clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

METHODS = ("fpr", "youden", "fixed")


def choose_threshold(y_val, p_val, method: str = "fpr", target_fpr: float = 0.05) -> float:
    if method not in METHODS:
        raise ValueError(f"threshold.method must be one of {METHODS}, got {method!r}")
    y_val, p_val = np.asarray(y_val), np.asarray(p_val, dtype=np.float64)
    if method == "fixed" or len(np.unique(y_val)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y_val, p_val)
    thresholds = np.minimum(thresholds, 1.0)
    if method == "youden":
        return float(thresholds[np.argmax(tpr - fpr)])
    ok = np.flatnonzero(fpr <= target_fpr)
    return float(thresholds[ok[-1]])


def uncertain_band(threshold: float, margin: float) -> tuple[float, float]:
    return max(0.0, threshold - margin), min(1.0, threshold + margin)
