from __future__ import annotations

import numpy as np
import pytest

from negate.classifiers import LogRegDetector, XGBoostDetector, ZeroShotDetector, load_detector


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 3] + rng.normal(0, 0.5, 300) > 0).astype(int)
    return X[:200], y[:200], X[200:250], y[200:250], X[250:], y[250:]


def auroc(y, p):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, p)


@pytest.mark.parametrize("make", [
    lambda: XGBoostDetector(n_estimators=60),
    lambda: XGBoostDetector(n_estimators=60, pca_components=10),
    lambda: LogRegDetector(),
    lambda: LogRegDetector(pca_components=0.9),
])
def test_fit_predict_save_load_round_trip(make, data, tmp_path):
    X, y, Xv, yv, Xt, yt = data
    det = make().fit(X, y, Xv, yv)
    p = det.predict_proba(Xt)
    assert p.shape == (len(Xt), 2) and np.allclose(p.sum(1), 1)
    assert auroc(yt, p[:, 1]) > 0.8
    det.save(tmp_path)
    again = load_detector(tmp_path, det.kind, det.params(), det.state())
    np.testing.assert_allclose(again.predict_proba(Xt), p, atol=1e-6)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pickle"))


def test_xgboost_early_stopping_uses_validation(data):
    X, y, Xv, yv, _, _ = data
    det = XGBoostDetector(n_estimators=2000, learning_rate=0.3, early_stopping_rounds=5).fit(X, y, Xv, yv)
    assert det.model.best_iteration < 1999


def test_xgboost_is_deterministic_to_the_byte(data, tmp_path):
    X, y, Xv, yv, _, _ = data
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        XGBoostDetector(n_estimators=50, seed=1).fit(X, y, Xv, yv).save(tmp_path / name)
    assert (tmp_path / "a" / "model.ubj").read_bytes() == (tmp_path / "b" / "model.ubj").read_bytes()


def test_zero_shot_scores_by_one_column(data):
    X, y, *_ = data
    names = [f"f{i}" for i in range(X.shape[1])]
    det = ZeroShotDetector(score="f0", higher_is_synthetic=True).bind(names).fit(X, y)
    p = det.predict_proba(X)[:, 1]
    assert np.argsort(p).tolist() == np.argsort(X[:, 0], kind="stable").tolist() or auroc(y, p) == auroc(y, X[:, 0])
    flipped = ZeroShotDetector(score="f0", higher_is_synthetic=False).bind(names).fit(X, y)
    assert auroc(y, flipped.predict_proba(X)[:, 1]) == pytest.approx(1 - auroc(y, X[:, 0]))
    with pytest.raises(ValueError, match="not among the extracted features"):
        ZeroShotDetector(score="warpad.score.mean").bind(names)


@pytest.mark.parametrize(("X", "y", "match"), [
    (np.zeros((4, 2, 2)), np.array([0, 1, 0, 1]), "2-D"),
    (np.array([[np.nan, 1.0], [1.0, 2.0]]), np.array([0, 1]), "NaN"),
    (np.ones((4, 2)), np.array([0, 0, 0, 0]), "only one class"),
    (np.ones((4, 2)), np.array([0, 1, 2, 1]), "0 \\(real\\) or 1"),
])
def test_inputs_are_validated(X, y, match):
    with pytest.raises(ValueError, match=match):
        XGBoostDetector(n_estimators=5).fit(X, y)


def test_feature_count_mismatch_is_an_error(data):
    X, y, *_ = data
    det = LogRegDetector().fit(X, y)
    with pytest.raises(ValueError, match="expected 12 features"):
        det.predict_proba(X[:, :5])
