"""Metrics on synthetic score arrays, checked against sklearn and brute-force definitions."""

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score, roc_auc_score

from negate.evaluation.metrics import (
    CI_METRICS,
    _batched_metrics,
    binary_metrics,
    _weighted_auroc,
    bootstrap_ci,
    cluster_bootstrap_auroc,
    confusion,
    group_rates,
    per_format_metrics,
    wilson_interval,
)


def synthetic(n=600, seed=0, sep=1.0, decimals=None):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.45).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + sep * (2 * y - 1))))
    if decimals is not None:
        p = np.round(p, decimals)  # many ties
    return y, p


def brute_tpr_at_fpr(y, p, max_fpr):
    best = 0.0
    for t in np.unique(np.r_[p, np.inf]):
        flagged = p >= t
        if flagged[y == 0].mean() <= max_fpr:
            best = max(best, flagged[y == 1].mean())
    return best


def sklearn_ece(y, p, n_bins=15):
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    counts, _ = np.histogram(p, bins=np.linspace(0, 1, n_bins + 1))
    counts = counts[counts > 0]
    return float(np.sum(np.abs(frac_pos - mean_pred) * counts) / len(p))


def test_binary_metrics_match_sklearn_and_definitions():
    y, p = synthetic()
    m = binary_metrics(y, p, threshold=0.6)
    pred = (p >= 0.6).astype(int)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert m["ap"] == pytest.approx(average_precision_score(y, p))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["ece"] == pytest.approx(sklearn_ece(y, p), abs=1e-9)
    assert m["tpr_at_1fpr"] == pytest.approx(brute_tpr_at_fpr(y, p, 0.01))
    assert m["tpr_at_5fpr"] == pytest.approx(brute_tpr_at_fpr(y, p, 0.05))
    assert m["tpr"] == pytest.approx(pred[y == 1].mean())
    assert m["fpr"] == pytest.approx(pred[y == 0].mean())
    assert (m["n"], m["n_pos"], m["n_neg"]) == (len(y), y.sum(), len(y) - y.sum())
    assert m["tpr_at_1fpr"] <= m["tpr_at_5fpr"]


def test_ece_is_zero_for_calibrated_bins_and_large_for_overconfident():
    # Every score in a bin equals that bin's fake fraction -> perfectly calibrated.
    y = np.array([0, 0, 0, 1] * 25 + [1, 1, 1, 0] * 25)
    p = np.array([0.25] * 100 + [0.75] * 100)
    assert binary_metrics(y, p)["ece"] == pytest.approx(0.0, abs=1e-12)
    # Always 0.99 sure of the label, right only half the time.
    y2 = np.array([0, 1] * 50)
    p2 = np.array([0.99, 0.01] * 25 + [0.01, 0.99] * 25)
    assert binary_metrics(y2, p2)["ece"] == pytest.approx(0.49, abs=1e-6)


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_nan_not_crash(label):
    y = np.full(20, label)
    p = np.linspace(0.05, 0.95, 20)
    m = binary_metrics(y, p, 0.5)
    for key in ("auroc", "ap", "balanced_accuracy", "tpr_at_1fpr", "tpr_at_5fpr"):
        assert math.isnan(m[key])
    assert m["accuracy"] == pytest.approx(((p >= 0.5) == label).mean())
    assert math.isnan(m["fpr"] if label == 1 else m["tpr"])
    ci = bootstrap_ci(y, p, 0.5, n_boot=50)
    assert all(math.isnan(v) for v in ci["auroc"])
    assert all(math.isfinite(v) for v in ci["accuracy"])


def test_input_validation():
    with pytest.raises(ValueError, match="rows"):
        binary_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_metrics([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="only 0"):
        binary_metrics([0, 2], [0.5, 0.5])


@pytest.mark.parametrize("seed,decimals", [(0, None), (1, 1), (2, 2), (3, 0)])
def test_batched_bootstrap_metrics_equal_reference_on_each_resample(seed, decimals):
    """The vectorised formulas used for bootstrapping must reproduce binary_metrics exactly, ties included."""
    y, p = synthetic(n=300, seed=seed, decimals=decimals)
    rng = np.random.default_rng(seed)
    pos, neg = p[y == 1], p[y == 0]
    b = 5
    pos_b = pos[rng.integers(0, pos.size, (b, pos.size))]
    neg_b = neg[rng.integers(0, neg.size, (b, neg.size))]
    batched = _batched_metrics(pos_b, neg_b, threshold=0.5)
    for i in range(b):
        ref = binary_metrics(np.r_[np.ones(pos.size), np.zeros(neg.size)], np.r_[pos_b[i], neg_b[i]], 0.5)
        for key in CI_METRICS:
            assert batched[key][i] == pytest.approx(ref[key], abs=1e-9), key


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    y, p = synthetic(n=1302, seed=4)
    point = binary_metrics(y, p, 0.5)
    ci = bootstrap_ci(y, p, 0.5, n_boot=1000, seed=0)
    for key in ("auroc", "ap", "accuracy", "balanced_accuracy", "ece", "tpr", "fpr", "tpr_at_5fpr"):
        lo, hi = ci[key]
        assert lo <= point[key] <= hi, key
        assert hi - lo > 0, key
    assert bootstrap_ci(y, p, 0.5, n_boot=1000, seed=0) == ci
    assert bootstrap_ci(y, p, 0.5, n_boot=1000, seed=1) != ci


@pytest.mark.parametrize("decimals", [None, 1])
def test_weighted_auroc_equals_sklearn_with_sample_weights(decimals):
    y, p = synthetic(n=400, seed=7, decimals=decimals)
    weights = np.random.default_rng(0).integers(0, 4, (3, y.size)).astype(float)
    expected = [roc_auc_score(y, p, sample_weight=w) for w in weights]
    assert _weighted_auroc(p, y, weights) == pytest.approx(expected, abs=1e-12)


def _clustered(n_clusters=8, per_cluster=60, seed=0):
    """Each cluster shifts all its scores by one draw: images of a cluster are not independent evidence."""
    rng = np.random.default_rng(seed)
    y, p, groups = [], [], []
    for label in (0, 1):
        for c in range(n_clusters):
            shift = rng.normal(scale=1.0)
            y += [label] * per_cluster
            p += list(1 / (1 + np.exp(-(rng.normal(size=per_cluster) * 0.3 + shift + (2 * label - 1)))))
            groups += [f"{label}-{c}"] * per_cluster
    return np.array(y), np.array(p), groups


def test_cluster_bootstrap_is_wider_than_the_image_bootstrap_on_clustered_scores():
    y, p, groups = _clustered()
    point = roc_auc_score(y, p)
    lo, hi = cluster_bootstrap_auroc(y, {"a": p}, groups, n_boot=1000)["auroc"]["a"]
    img_lo, img_hi = bootstrap_ci(y, p, n_boot=1000)["auroc"]
    assert lo <= point <= hi
    assert hi - lo > 2 * (img_hi - img_lo)
    assert cluster_bootstrap_auroc(y, {"a": p}, groups, n_boot=200, seed=3) == \
        cluster_bootstrap_auroc(y, {"a": p}, groups, n_boot=200, seed=3)


def test_cluster_bootstrap_pairs_the_detectors_on_the_same_draws():
    y, p, groups = _clustered(seed=1)
    worse = np.clip(p + np.random.default_rng(2).normal(scale=0.3, size=p.size), 0, 1)
    out = cluster_bootstrap_auroc(y, {"a": p, "same": p.copy(), "worse": worse}, groups, n_boot=500)
    assert out["difference"]["a - same"] == {"ci": [0.0, 0.0], "share_le_0": 1.0}
    assert out["difference"]["a - worse"]["ci"][0] > 0 and out["difference"]["a - worse"]["share_le_0"] < 0.025
    assert out["clusters"] == {"fake": 8, "real": 8}


def test_cluster_bootstrap_leaves_out_unscored_rows_and_needs_both_classes():
    y, p, groups = _clustered(n_clusters=3, per_cluster=10)
    with_nan = p.copy()
    with_nan[:5] = np.nan
    out = cluster_bootstrap_auroc(y, {"a": with_nan}, groups, n_boot=50)
    assert all(np.isfinite(out["auroc"]["a"]))
    with pytest.raises(ValueError, match="fakes and reals"):
        cluster_bootstrap_auroc(y[y == 1], {"a": p[y == 1]}, [g for g, label in zip(groups, y) if label], n_boot=10)


def test_bootstrap_ci_narrows_with_more_data():
    y_small, p_small = synthetic(n=200, seed=5)
    y_big, p_big = synthetic(n=5000, seed=5)
    small = bootstrap_ci(y_small, p_small, n_boot=300)["auroc"]
    big = bootstrap_ci(y_big, p_big, n_boot=300)["auroc"]
    assert big[1] - big[0] < (small[1] - small[0]) / 2


def test_bootstrap_interval_level_follows_alpha():
    y, p = synthetic(n=500, seed=6)
    wide = bootstrap_ci(y, p, n_boot=500, alpha=0.01)["auroc"]
    narrow = bootstrap_ci(y, p, n_boot=500, alpha=0.32)["auroc"]
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_confusion_counts():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.5, 0.9, 0.2, 0.5, 0.49])
    assert confusion(y, p, 0.5) == {"tn": 1, "fp": 2, "fn": 2, "tp": 2}


def test_group_rates_hand_example():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.6, 0.1, 0.95, 0.4])
    groups = ["sdxl", "sdxl", "sdxl", "sdxl", "photos", "photos", "photos", "mixed", "mixed"]
    rows = {r["group"]: r for r in group_rates(y, p, 0.5, groups)}
    assert list(rows) == ["mixed", "photos", "sdxl"]
    assert rows["sdxl"]["detection_rate"] == pytest.approx(3 / 4)
    assert math.isnan(rows["sdxl"]["fpr"]) and math.isnan(rows["sdxl"]["auroc"])
    assert rows["photos"]["fpr"] == pytest.approx(1 / 3)
    assert math.isnan(rows["photos"]["detection_rate"])
    assert rows["mixed"]["auroc"] == pytest.approx(1.0)
    assert (rows["sdxl"]["n"], rows["sdxl"]["n_fake"], rows["sdxl"]["n_real"]) == (4, 4, 0)
    lo, hi = rows["sdxl"]["detection_lo"], rows["sdxl"]["detection_hi"]
    assert 0 < lo < 0.75 < hi <= 1


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.2 < hi < 0.35  # Wilson is not degenerate at 0/n
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_per_format_metrics():
    y, p = synthetic(n=400, seed=7)
    formats = np.where(np.arange(400) % 3 == 0, "PNG", "JPEG")
    rows = per_format_metrics(y, p, 0.5, formats)
    assert [r["format"] for r in rows] == ["JPEG", "PNG"]
    assert sum(r["n"] for r in rows) == 400
    png = formats == "PNG"
    assert rows[1]["auroc"] == pytest.approx(roc_auc_score(y[png], p[png]))
    with pytest.raises(ValueError, match="entries"):
        per_format_metrics(y, p, 0.5, formats[:-1])
