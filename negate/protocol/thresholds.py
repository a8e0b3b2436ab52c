"""Decision thresholds, chosen on validation predictions only.

``fpr``: the lowest threshold whose false-positive rate on validation reals is at most ``target_fpr`` — flagging a
real photo as synthetic is the costly error, so it is bounded first. ``youden``: maximises TPR - FPR. ``fixed``: 0.5.
The uncertain band is ``margin`` either side of ``t`` when ``t`` is 0.5, and as wide in logit space elsewhere.
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
    """The uncertain band around ``threshold``: ``margin`` is its half-width in probability at a threshold of 0.5, and
    the band keeps that width in logit space (``logit(0.5 + margin)`` either side), so a threshold near 0 or 1 gets a
    band that narrows with it instead of one that reaches 1 and leaves no probability for "synthetic"."""
    if margin <= 0:
        return threshold, threshold
    if margin >= 0.5:
        return 0.0, 1.0
    from scipy.special import expit, logit

    centre, half = logit(min(max(threshold, 1e-6), 1 - 1e-6)), logit(0.5 + margin)
    return float(expit(centre - half)), float(expit(centre + half))
