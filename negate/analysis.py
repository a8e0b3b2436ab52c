"""Feature analysis for ``negate pretrain``: which hand-crafted features separate real from AI-generated images?

:func:`analyse_features` ranks every column by single-feature AUROC and Cohen's d, fits a small XGBoost model for
gain importance, and writes a ranked CSV plus plots (class-conditional histograms, PCA scatter, correlation
heatmap, importance bars, per-family AUROC). Single-feature AUROC is reported as ``max(auc, 1 - auc)`` with the
direction kept separately, so a feature that is lower on fakes ranks as high as one that is higher.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from negate.evaluation.plots import FAKE_COLOUR, REAL_COLOUR, new_figure, save

CSV_COLUMNS = (
    "rank",
    "feature",
    "family",
    "auroc",
    "raw_auroc",
    "direction",
    "cohens_d",
    "mean_real",
    "mean_fake",
    "std_real",
    "std_fake",
    "xgb_gain",
)
MAX_GROUP_COLOURS = 9  # tab10 without its grey, which marks reals


def family_of(name: str) -> str:
    return name.split(".", 1)[0]


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean(b) - mean(a)) / pooled standard deviation; 0 when both groups are constant."""
    na, nb = a.size, b.size
    if na < 2 or nb < 2:
        return float("nan")
    pooled = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    diff = b.mean() - a.mean()
    if pooled == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / pooled)


def _xgb_gain(X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Total gain per column from a small, quick XGBoost fit (columns never split on get 0)."""
    from xgboost import XGBClassifier

    model = XGBClassifier(
        n_estimators=150, max_depth=3, learning_rate=0.1, subsample=0.8, colsample_bytree=0.8,
        n_jobs=2, random_state=seed, tree_method="hist", verbosity=0,
    )
    model.fit(X, y)
    # Booster names columns f0..f{D-1}: our names may contain characters XGBoost rejects.
    score = model.get_booster().get_score(importance_type="total_gain")
    gain = np.zeros(X.shape[1])
    for key, value in score.items():
        gain[int(key[1:])] = value
    total = gain.sum()
    return gain / total if total > 0 else gain


def analyse_features(
    X,
    y,
    names: Sequence[str],
    out_dir,
    groups: Sequence | None = None,
    top_k: int = 12,
    seed: int = 0,
) -> list[dict]:
    """Rank features and write ``features_ranked.csv`` and PNG plots into ``out_dir``; returns the ranked rows.

    ``X`` (N, D) features, ``y`` (N,) labels (1 = AI-generated), ``names`` the D column names ("family.stat"),
    ``groups`` optional per-row generator labels for the PCA plot. ``xgb_gain`` is the share of total gain.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int64).ravel()
    names = [str(n) for n in names]
    if X.ndim != 2 or X.shape[0] != y.size or X.shape[1] != len(names):
        raise ValueError(
            f"X must be (N, D) with N = len(y) = {y.size} and D = len(names) = {len(names)}; got {X.shape}"
        )
    if not np.isin(y, (0, 1)).all() or y.min() == y.max():
        raise ValueError("y needs both classes, as 0 (real) and 1 (AI-generated)")
    if not np.isfinite(X).all():
        bad = [names[j] for j in np.flatnonzero(~np.isfinite(X).all(axis=0))]
        raise ValueError(f"non-finite values in features {bad[:10]}{' ...' if len(bad) > 10 else ''}")
    if groups is not None and len(groups) != y.size:
        raise ValueError(f"groups has {len(groups)} entries but there are {y.size} rows")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    real, fake = X[y == 0], X[y == 1]
    gain = _xgb_gain(X, y, seed)
    rows = []
    for j, name in enumerate(names):
        raw = float(roc_auc_score(y, X[:, j]))
        rows.append(
            {
                "feature": name,
                "family": family_of(name),
                "auroc": max(raw, 1.0 - raw),
                "raw_auroc": raw,
                "direction": "higher on AI" if raw >= 0.5 else "lower on AI",
                "cohens_d": cohens_d(real[:, j], fake[:, j]),
                "mean_real": float(real[:, j].mean()),
                "mean_fake": float(fake[:, j].mean()),
                "std_real": float(real[:, j].std()),
                "std_fake": float(fake[:, j].std()),
                "xgb_gain": float(gain[j]),
                "_col": j,
            }
        )
    rows.sort(key=lambda r: (-r["auroc"], -abs(r["cohens_d"]) if np.isfinite(r["cohens_d"]) else 0.0, r["feature"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank

    top = rows[: max(1, min(top_k, len(rows)))]
    cols = [r["_col"] for r in top]
    _plot_histograms(X, y, top, out / "top_feature_histograms.png")
    _plot_pca(X, y, groups, out / "pca.png", seed)
    _plot_correlation(X[:, cols], [r["feature"] for r in top], out / "top_feature_correlation.png")
    _plot_importance(rows, out / "xgb_importance.png", top_k)
    _plot_family_auroc(rows, out / "family_auroc.png")

    for r in rows:
        del r["_col"]
    with open(out / "features_ranked.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _plot_histograms(X: np.ndarray, y: np.ndarray, top: list[dict], path: Path) -> None:
    """Per-class density histograms; bins span the 1st-99th percentile so outliers do not flatten the plot."""
    k = len(top)
    ncols = min(4, k)
    nrows = int(np.ceil(k / ncols))
    fig = new_figure(3.2 * ncols, 2.6 * nrows + 0.6)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, r in zip(axes, top, strict=False):  # spare axes are hidden below
        v = X[:, r["_col"]]
        lo, hi = np.percentile(v, [1, 99])
        if hi <= lo:
            lo, hi = v.min() - 0.5, v.max() + 0.5
        bins = np.linspace(lo, hi, 31)
        clipped = np.clip(v, lo, hi)
        ax.hist(clipped[y == 0], bins=bins, density=True, alpha=0.55, color=REAL_COLOUR, label="real")
        ax.hist(clipped[y == 1], bins=bins, density=True, alpha=0.55, color=FAKE_COLOUR, label="AI-generated")
        ax.set_title(f"#{r['rank']} {r['feature']}\nAUROC {r['auroc']:.3f}, d = {r['cohens_d']:.2f}", fontsize="small")
        ax.set_xlabel("value (1st-99th pct.)", fontsize="x-small")
        ax.set_ylabel("density", fontsize="x-small")
        ax.tick_params(labelsize="x-small")
        ax.legend(fontsize="xx-small")
    for ax in axes[k:]:
        ax.set_visible(False)
    fig.suptitle("Top features by single-feature AUROC: class-conditional distributions")
    save(fig, path)


def _plot_pca(X: np.ndarray, y: np.ndarray, groups: Sequence | None, path: Path, seed: int) -> None:
    Z = StandardScaler().fit_transform(X)
    n_comp = min(2, Z.shape[1], Z.shape[0])
    pca = PCA(n_components=n_comp, random_state=seed).fit(Z)
    P = pca.transform(Z)
    if n_comp == 1:
        P = np.column_stack([P[:, 0], np.zeros(len(P))])
    ratio = np.append(pca.explained_variance_ratio_, [0.0] * (2 - n_comp))
    panels = 2 if groups is not None else 1
    fig = new_figure(6.0 * panels + (2.5 if groups is not None else 0.0), 5.5)
    axes = np.atleast_1d(fig.subplots(1, panels))
    for cls, colour, label in ((0, REAL_COLOUR, "real"), (1, FAKE_COLOUR, "AI-generated")):
        m = y == cls
        axes[0].scatter(P[m, 0], P[m, 1], s=8, alpha=0.5, c=colour, label=label)
    axes[0].set_title("PCA of standardised features, by class")
    if groups is not None:
        # Reals are one grey class; the most frequent AI generators get colours, the rest are "other AI".
        g = np.asarray([str(v) for v in groups], dtype=object)
        fake_names, counts = np.unique(g[y == 1], return_counts=True)
        keep = sorted(fake_names[np.argsort(-counts, kind="stable")][:MAX_GROUP_COLOURS].tolist())
        palette = [colormaps["tab10"](i) for i in range(10) if i != 7]
        layers = [("real", y == 0, "#c7c7c7")]
        layers += [(name, (y == 1) & (g == name), palette[i]) for i, name in enumerate(keep)]
        layers.append(("other AI", (y == 1) & ~np.isin(g, keep), "black"))
        for name, m, colour in layers:
            if m.any():
                label = name if len(name) <= 32 else name[:30] + "…"
                axes[1].scatter(P[m, 0], P[m, 1], s=8, alpha=0.6, color=colour, label=f"{label} ({m.sum()})")
        axes[1].set_title(f"AI images by generator (top {MAX_GROUP_COLOURS}), reals in grey")
    for i, ax in enumerate(axes):
        ax.set_xlabel(f"PC1 ({ratio[0]:.1%} variance)")
        ax.set_ylabel(f"PC2 ({ratio[1]:.1%} variance)")
        if i == 0:
            ax.legend(fontsize="x-small", markerscale=2, loc="best")
        else:  # many long generator names: keep them off the points
            ax.legend(fontsize="x-small", markerscale=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.grid(alpha=0.3)
    save(fig, path)


def _plot_correlation(Xt: np.ndarray, names: list[str], path: Path) -> None:
    """Spearman (rank) correlation between the top features: near-duplicates show as |rho| close to 1."""
    from scipy.stats import rankdata

    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.atleast_2d(np.corrcoef(rankdata(Xt, axis=0), rowvar=False))
    corr = np.nan_to_num(corr, nan=0.0)  # a constant column has no defined correlation
    k = len(names)
    fig = new_figure(max(5.0, 0.5 * k + 3.0), max(4.5, 0.5 * k + 2.0))
    ax = fig.add_subplot()
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    fig.colorbar(im, ax=ax, label="Spearman correlation")
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize="x-small")
    ax.set_yticks(range(k), names, fontsize="x-small")
    if k <= 16:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(corr[i, j]) > 0.6 else "black")
    ax.set_title("Correlation of the top features")
    ax.set_xlabel("feature")
    ax.set_ylabel("feature")
    save(fig, path)


def _plot_importance(rows: list[dict], path: Path, top_k: int) -> None:
    ranked = sorted(rows, key=lambda r: -r["xgb_gain"])[: max(1, top_k)]
    fig = new_figure(7.0, 0.3 * len(ranked) + 1.8)
    ax = fig.add_subplot()
    ypos = np.arange(len(ranked))
    ax.barh(ypos, [r["xgb_gain"] for r in ranked], color="#9467bd", label="share of total gain")
    ax.set_yticks(ypos, [r["feature"] for r in ranked], fontsize="small")
    ax.invert_yaxis()
    ax.set_title("XGBoost feature importance (gain, quick fit on all rows)")
    ax.set_xlabel("share of total gain")
    ax.set_ylabel("feature")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    save(fig, path)


def _plot_family_auroc(rows: list[dict], path: Path) -> None:
    """Best and median single-feature AUROC of each family (name prefix before the first '.')."""
    families: dict[str, list[float]] = {}
    for r in rows:
        families.setdefault(r["family"], []).append(r["auroc"])
    names = sorted(families, key=lambda f: -max(families[f]))
    best = [max(families[f]) for f in names]
    median = [float(np.median(families[f])) for f in names]
    x = np.arange(len(names))
    fig = new_figure(max(5.0, 0.8 * len(names) + 2.0), 4.5)
    ax = fig.add_subplot()
    ax.bar(x - 0.2, best, width=0.4, color=FAKE_COLOUR, label="best feature")
    ax.bar(x + 0.2, median, width=0.4, color="#7f7f7f", label="median feature")
    ax.axhline(0.5, ls=":", color="black", label="chance")
    ax.set_xticks(x, [f"{f}\n({len(families[f])})" for f in names], fontsize="small")
    ax.set(ylim=(0.4, 1.02), title="Single-feature AUROC per feature family")
    ax.set_xlabel("family (number of features)")
    ax.set_ylabel("AUROC = max(auc, 1 - auc)")
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    save(fig, path)


def print_ranked_table(rows: Sequence[dict], n: int = 20, console=None) -> None:
    """Print the ``n`` best-ranked features as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Top {min(n, len(rows))} of {len(rows)} features by single-feature AUROC")
    for col, justify in (("rank", "right"), ("feature", "left"), ("AUROC", "right"), ("direction", "left"),
                         ("Cohen's d", "right"), ("XGB gain", "right")):
        table.add_column(col, justify=justify)
    for r in rows[:n]:
        table.add_row(str(r["rank"]), r["feature"], f"{r['auroc']:.3f}", r["direction"], f"{r['cohens_d']:.2f}",
                      f"{r['xgb_gain']:.3f}")
    (console or Console()).print(table)
