"""Feature analysis on synthetic features with planted signal."""

import csv

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from sklearn.metrics import roc_auc_score

from negate.analysis import analyse_features, cohens_d, print_ranked_table

PLOTS = ("top_feature_histograms.png", "pca.png", "top_feature_correlation.png", "xgb_importance.png",
         "family_auroc.png")


def planted(n=500, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(int)
    X = rng.normal(size=(n, 24))
    X[:, 5] += 1.5 * y  # strong, higher on fakes
    X[:, 17] -= 0.8 * y  # medium, lower on fakes
    X[:, 9] = 3.0  # constant column
    names = [f"{fam}.stat_{j:02d}" for j, fam in enumerate(["spectral"] * 8 + ["lbp"] * 8 + ["noise"] * 8)]
    groups = np.where(y == 1, rng.choice(["SDXL", "GAN"], n), "real")
    return X, y, names, groups


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    X, y, names, groups = planted()
    rows = analyse_features(X, y, names, out, groups=groups, top_k=6, seed=0)
    return out, X, y, names, rows


def test_ranking_finds_planted_features(analysed):
    _, X, y, names, rows = analysed
    assert [r["feature"] for r in rows[:2]] == ["spectral.stat_05", "noise.stat_17"]
    assert [r["rank"] for r in rows] == list(range(1, len(names) + 1))
    top, second = rows[0], rows[1]
    assert top["direction"] == "higher on AI" and second["direction"] == "lower on AI"
    assert top["auroc"] == pytest.approx(roc_auc_score(y, X[:, 5]))
    assert second["auroc"] == pytest.approx(1 - roc_auc_score(y, X[:, 17]))
    assert top["cohens_d"] == pytest.approx(1.5, abs=0.25)
    assert second["cohens_d"] == pytest.approx(-0.8, abs=0.25)
    assert top["family"] == "spectral"
    constant = next(r for r in rows if r["feature"] == "lbp.stat_09")
    assert constant["auroc"] == pytest.approx(0.5) and constant["cohens_d"] == 0.0 and constant["xgb_gain"] == 0.0
    assert all(r["auroc"] >= 0.5 for r in rows)


def test_xgb_gain_is_a_share_and_favours_signal(analysed):
    *_, rows = analysed
    gains = {r["feature"]: r["xgb_gain"] for r in rows}
    assert sum(gains.values()) == pytest.approx(1.0)
    assert max(gains, key=gains.get) == "spectral.stat_05"


def test_csv_and_plots_written(analysed):
    out, _, _, names, rows = analysed
    with open(out / "features_ranked.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(names)
    assert table[0]["feature"] == rows[0]["feature"]
    assert float(table[0]["auroc"]) == pytest.approx(rows[0]["auroc"])
    for name in PLOTS:
        with Image.open(out / name) as im:
            assert im.width > 300 and np.asarray(im.convert("L")).std() > 5


def test_without_groups_and_tiny_inputs(tmp_path):
    X, y, names, _ = planted(n=120, seed=1)
    rows = analyse_features(X[:, :2], y, names[:2], tmp_path, top_k=12)
    assert len(rows) == 2
    rows1 = analyse_features(X[:, 5:6], y, names[5:6], tmp_path / "one", top_k=3)
    assert rows1[0]["feature"] == "spectral.stat_05"
    for name in PLOTS:
        assert (tmp_path / "one" / name).stat().st_size > 0


def test_input_errors(tmp_path):
    X, y, names, _ = planted(n=60)
    with pytest.raises(ValueError, match="both classes"):
        analyse_features(X, np.zeros_like(y), names, tmp_path)
    X_bad = X.copy()
    X_bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="spectral.stat_04"):
        analyse_features(X_bad, y, names, tmp_path)
    with pytest.raises(ValueError, match="D = len"):
        analyse_features(X, y, names[:-1], tmp_path)


def test_cohens_d_definition():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = a + 2.0
    assert cohens_d(a, b) == pytest.approx(2.0 / a.std(ddof=1))
    assert cohens_d(b, a) == pytest.approx(-2.0 / a.std(ddof=1))


def test_print_ranked_table(analysed):
    *_, rows = analysed
    console = Console(record=True, width=140)
    print_ranked_table(rows, 3, console=console)
    text = console.export_text()
    assert "spectral.stat_05" in text and "noise.stat_17" in text
    assert rows[3]["feature"] not in text
