"""Binary-detection metrics on plain arrays: point estimates, stratified bootstrap intervals, per-group rates.

Convention: label 1 = AI-generated ("fake", the positive class), ``prob`` = predicted probability of label 1, and a
row is called fake when ``prob >= threshold``. TPR is therefore the detection rate and FPR the share of real images
wrongly flagged. Metrics that need both classes (AUROC, AP, TPR at fixed FPR, balanced accuracy) are NaN when only
one class is present instead of raising.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    roc_auc_score,
    roc_curve,
)
from torchmetrics.functional.classification import binary_calibration_error

ECE_BINS = 15
FIXED_FPRS = {"tpr_at_1fpr": 0.01, "tpr_at_5fpr": 0.05}
# Metrics that get a bootstrap interval (counts n / n_pos do not).
CI_METRICS = (
    "auroc",
    "ap",
    "accuracy",
    "balanced_accuracy",
    "tpr_at_1fpr",
    "tpr_at_5fpr",
    "ece",
    "tpr",
    "fpr",
)


def _check(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(prob, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} rows but prob has {p.size}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 (real) and 1 (fake)")
    if not np.isfinite(p).all() or (p.size and (p.min() < 0 or p.max() > 1)):
        raise ValueError("prob must be finite probabilities in [0, 1]")
    return y, p


def _tpr_at_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float) -> float:
    """Highest TPR over ROC operating points whose FPR does not exceed ``max_fpr``."""
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def expected_calibration_error(y_true, prob, n_bins: int = ECE_BINS) -> float:
    """L1 ECE of the positive-class probability over ``n_bins`` uniform bins (torchmetrics)."""
    y, p = _check(y_true, prob)
    if y.size == 0:
        return float("nan")
    return float(binary_calibration_error(torch.from_numpy(p), torch.from_numpy(y), n_bins=n_bins, norm="l1"))


def binary_metrics(y_true, prob, threshold: float = 0.5) -> dict[str, float]:
    """AUROC, AP, accuracy, balanced accuracy, TPR at 1 % / 5 % FPR, ECE, counts, and TPR/FPR at ``threshold``."""
    y, p = _check(y_true, prob)
    n, n_pos = int(y.size), int(y.sum())
    n_neg = n - n_pos
    nan = float("nan")
    pred = (p >= threshold).astype(np.int64)
    both = n_pos > 0 and n_neg > 0
    out = {
        "n": n,
        "n_pos": n_pos,
        "n_neg": n_neg,
        "threshold": float(threshold),
        "auroc": float(roc_auc_score(y, p)) if both else nan,
        "ap": float(average_precision_score(y, p)) if both else nan,
        "accuracy": float(accuracy_score(y, pred)) if n else nan,
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else nan,
        "ece": expected_calibration_error(y, p),
        "tpr": float(pred[y == 1].mean()) if n_pos else nan,
        "fpr": float(pred[y == 0].mean()) if n_neg else nan,
    }
    for key, max_fpr in FIXED_FPRS.items():
        out[key] = _tpr_at_fpr(y, p, max_fpr) if both else nan
    return out


def confusion(y_true, prob, threshold: float = 0.5) -> dict[str, int]:
    """Confusion counts at ``threshold`` with fake as positive: ``{"tn", "fp", "fn", "tp"}``."""
    y, p = _check(y_true, prob)
    tn, fp, fn, tp = confusion_matrix(y, (p >= threshold).astype(np.int64), labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


# ----------------------------------------------------------------------------------------------------------------
# Bootstrap. Calling sklearn 1000 times per metric is too slow, so every resample is scored at once on a (B, n)
# matrix. Resampling is stratified: each resample keeps n_pos fakes followed by n_neg reals, so the label row is the
# same for all of them. ``tests/test_metrics.py`` checks these batched formulas against ``binary_metrics``.
# ----------------------------------------------------------------------------------------------------------------


def _batched_metrics(
    pos: np.ndarray, neg: np.ndarray, threshold: float, n_bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Metrics for B resamples: ``pos`` (B, n_pos) fake scores, ``neg`` (B, n_neg) real scores."""
    b, n_pos = pos.shape
    n_neg = neg.shape[1]
    n = n_pos + n_neg
    nan = np.full(b, np.nan)
    scores = np.concatenate([pos, neg], axis=1)
    labels = np.concatenate([np.ones(n_pos), np.zeros(n_neg)])
    out: dict[str, np.ndarray] = {}

    tpr = (pos >= threshold).mean(axis=1) if n_pos else nan
    tnr = (neg < threshold).mean(axis=1) if n_neg else nan
    out["tpr"] = tpr
    out["fpr"] = 1.0 - tnr
    out["accuracy"] = ((pos >= threshold).sum(axis=1) + (neg < threshold).sum(axis=1)) / n
    out["balanced_accuracy"] = (tpr + tnr) / 2

    # ECE: same uniform bins and right-closed bucketing as torchmetrics (p == 1 gets its own last slot).
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    slot = np.searchsorted(edges, scores, side="right") - 1
    flat = (np.arange(b)[:, None] * (n_bins + 1) + slot).ravel()
    size = b * (n_bins + 1)
    conf = np.bincount(flat, weights=scores.ravel(), minlength=size).reshape(b, -1)
    acc = np.bincount(flat, weights=np.broadcast_to(labels, scores.shape).ravel(), minlength=size).reshape(b, -1)
    out["ece"] = np.abs(acc - conf).sum(axis=1) / n  # = sum_b |mean acc - mean conf| * count_b / n

    if not (n_pos and n_neg):
        for key in ("auroc", "ap", *FIXED_FPRS):
            out[key] = nan
        return out

    # AUROC = Mann-Whitney U with mid-ranks for ties.
    ranks = rankdata(scores, method="average", axis=1)
    out["auroc"] = (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

    # Walk thresholds from high to low; an operating point exists only at the last row of each tie block.
    order = np.argsort(-scores, axis=1, kind="stable")
    s_sorted = np.take_along_axis(scores, order, axis=1)
    is_pos = order < n_pos
    tp = np.cumsum(is_pos, axis=1)
    fp = np.arange(1, n + 1)[None, :] - tp
    block_end = np.ones_like(is_pos)
    block_end[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]
    # AP (sklearn's step definition): each positive contributes the precision at the end of its tie block.
    end_idx = np.where(block_end, np.arange(n)[None, :], n)
    end_idx = np.minimum.accumulate(end_idx[:, ::-1], axis=1)[:, ::-1]
    precision_at_end = np.take_along_axis(tp / (tp + fp), end_idx, axis=1)
    out["ap"] = (precision_at_end * is_pos).sum(axis=1) / n_pos
    roc_tpr, roc_fpr = tp / n_pos, fp / n_neg
    for key, max_fpr in FIXED_FPRS.items():
        ok = block_end & (roc_fpr <= max_fpr + 1e-12)
        out[key] = np.where(ok, roc_tpr, 0.0).max(axis=1)  # the (0, 0) point is always allowed
    return out


def bootstrap_ci(
    y_true,
    prob,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    chunk: int = 250,
) -> dict[str, tuple[float, float]]:
    """Percentile ``1 - alpha`` intervals from ``n_boot`` stratified resamples (fakes and reals drawn separately).

    Metrics undefined on the data (e.g. AUROC with one class) get ``(nan, nan)``.
    """
    y, p = _check(y_true, prob)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if y.size == 0:
        return {k: (float("nan"), float("nan")) for k in CI_METRICS}
    rng = np.random.default_rng(seed)
    pos_scores, neg_scores = p[y == 1], p[y == 0]
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, n_boot, chunk):  # chunks bound memory at roughly chunk * n * 8 bytes per array
        b = min(chunk, n_boot - start)
        pos = pos_scores[rng.integers(0, max(pos_scores.size, 1), (b, pos_scores.size))]
        neg = neg_scores[rng.integers(0, max(neg_scores.size, 1), (b, neg_scores.size))]
        parts.append(_batched_metrics(pos, neg, threshold))
    out: dict[str, tuple[float, float]] = {}
    for key in CI_METRICS:
        vals = np.concatenate([part[key] for part in parts])
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            out[key] = (float("nan"), float("nan"))
        else:
            lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
            out[key] = (float(lo), float(hi))
    return out


def _weighted_auroc(scores: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC under per-row weights, one value per row of ``weights`` ``(B, n)`` (ties count a half): the
    Mann-Whitney statistic with each row counted as often as its weight says."""
    order = np.argsort(scores, kind="mergesort")
    s, yy, w = scores[order], y[order], weights[:, order]
    _, start = np.unique(s, return_index=True)
    neg = np.add.reduceat(w * (yy == 0), start, axis=1)  # weight of reals per distinct score
    pos = np.add.reduceat(w * (yy == 1), start, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))


def cluster_bootstrap_auroc(
    y_true,
    scores: dict[str, np.ndarray],
    groups: Sequence,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Percentile ``1 - alpha`` intervals of AUROC when rows come in clusters (the fakes of one generator family,
    the reals of one photo source): whole clusters are redrawn with replacement, the fakes' clusters and the reals'
    separately, so the interval says how much the number depends on *which* families and sources were held out,
    not only on which images. Every detector in ``scores`` is scored on the same draws (paired), so the difference
    of each to the first gets its own interval and the share of draws where it is <= 0.

    Rows where any score is NaN are left out. Returns ``{"auroc": {name: [lo, hi]}, "difference": {"a - b":
    {"ci": [lo, hi], "share_le_0": s}}, "clusters": {"fake": k, "real": m}, "n_boot": n_boot}``."""
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if not scores:
        raise ValueError("scores needs at least one detector")
    y = np.asarray(y_true).astype(np.int64).ravel()
    keys = _group_keys(groups, y.size)
    mat = np.vstack([np.asarray(v, dtype=np.float64).ravel() for v in scores.values()])
    if mat.shape[1] != y.size:
        raise ValueError(f"each score needs {y.size} rows, got {mat.shape[1]}")
    ok = np.isfinite(mat).all(0)
    y, keys, mat = y[ok], keys[ok], mat[:, ok]
    cluster_ids = {}
    ids = np.array([cluster_ids.setdefault((int(label), k), len(cluster_ids)) for label, k in zip(y, keys)])
    members_of = [np.flatnonzero(ids == c) for c in range(len(cluster_ids))]
    fake_c = [c for (label, _), c in cluster_ids.items() if label == 1]
    real_c = [c for (label, _), c in cluster_ids.items() if label == 0]
    if not fake_c or not real_c:
        raise ValueError("cluster bootstrap needs fakes and reals")
    rng = np.random.default_rng(seed)
    draws = np.zeros((n_boot, len(cluster_ids)))
    for pool in (fake_c, real_c):
        picks = rng.integers(0, len(pool), (n_boot, len(pool)))
        np.add.at(draws, (np.arange(n_boot)[:, None], np.asarray(pool)[picks]), 1.0)
    weights = np.zeros((n_boot, y.size))
    for c, rows in enumerate(members_of):
        weights[:, rows] = draws[:, [c]]
    aurocs = {name: _weighted_auroc(mat[i], y, weights) for i, name in enumerate(scores)}
    q = [alpha / 2, 1 - alpha / 2]
    names = list(scores)
    out = {"auroc": {n: [float(v) for v in np.quantile(a, q)] for n, a in aurocs.items()},
           "difference": {}, "clusters": {"fake": len(fake_c), "real": len(real_c)}, "n_boot": int(n_boot)}
    for other in names[1:]:
        d = aurocs[names[0]] - aurocs[other]
        out["difference"][f"{names[0]} - {other}"] = {"ci": [float(v) for v in np.quantile(d, q)],
                                                      "share_le_0": float(np.mean(d <= 0))}
    return out


# ----------------------------------------------------------------------------------------------------------------
# Per-group breakdowns
# ----------------------------------------------------------------------------------------------------------------


def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (scipy); ``(nan, nan)`` when n == 0."""
    if n == 0:
        return (float("nan"), float("nan"))
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=1 - alpha, method="wilson")
    return (float(ci.low), float(ci.high))


def _group_keys(groups: Sequence, n: int) -> np.ndarray:
    keys = np.asarray([str(g) for g in groups], dtype=object)
    if keys.size != n:
        raise ValueError(f"groups has {keys.size} entries but there are {n} rows")
    return keys


def group_rates(y_true, prob, threshold: float, groups: Sequence) -> list[dict]:
    """Per group (sorted by name): n, n_fake, n_real, detection rate (TPR on fakes), FPR on reals, each with a
    Wilson 95 % interval, mean probability, and AUROC when the group has both classes (NaN otherwise)."""
    y, p = _check(y_true, prob)
    keys = _group_keys(groups, y.size)
    nan = float("nan")
    rows = []
    for g in sorted(set(keys.tolist())):
        m = keys == g
        yg, pg = y[m], p[m]
        flagged = pg >= threshold
        n_fake, n_real = int(yg.sum()), int((yg == 0).sum())
        k_det, k_fp = int(flagged[yg == 1].sum()), int(flagged[yg == 0].sum())
        det_ci, fpr_ci = wilson_interval(k_det, n_fake), wilson_interval(k_fp, n_real)
        rows.append(
            {
                "group": g,
                "n": int(m.sum()),
                "n_fake": n_fake,
                "n_real": n_real,
                "detection_rate": k_det / n_fake if n_fake else nan,
                "detection_lo": det_ci[0],
                "detection_hi": det_ci[1],
                "fpr": k_fp / n_real if n_real else nan,
                "fpr_lo": fpr_ci[0],
                "fpr_hi": fpr_ci[1],
                "mean_prob": float(pg.mean()),
                "auroc": float(roc_auc_score(yg, pg)) if n_fake and n_real else nan,
            }
        )
    return rows


def per_format_metrics(y_true, prob, threshold: float, formats: Sequence) -> list[dict]:
    """:func:`binary_metrics` within each file format (e.g. JPEG / PNG / WEBP), as rows with a ``format`` key.

    Large gaps between formats mean the model reads the container, not the content (see the dev-set confounds).
    """
    y, p = _check(y_true, prob)
    keys = _group_keys(formats, y.size)
    rows = []
    for fmt in sorted(set(keys.tolist())):
        m = keys == fmt
        rows.append({"format": fmt, **binary_metrics(y[m], p[m], threshold)})
    return rows
