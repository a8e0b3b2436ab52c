"""Evaluation plots written straight to PNG (Agg canvas, no pyplot state, safe in workers and headless runs).

Every function takes arrays or metric rows plus an output path, draws one titled figure with labelled axes and a
legend, saves it and returns the path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

DPI = 120
REAL_COLOUR, FAKE_COLOUR = "#1f77b4", "#d62728"


def new_figure(width: float = 6.0, height: float = 5.0) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # long generator names must not clip the title
    return path


def _both_classes(y: np.ndarray) -> bool:
    return 0 < y.sum() < y.size


def plot_roc(y_true, prob, path, title: str = "ROC curve", threshold: float | None = None) -> Path:
    y, p = np.asarray(y_true).astype(int), np.asarray(prob, dtype=float)
    fig = new_figure()
    ax = fig.add_subplot()
    if _both_classes(y):
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color=FAKE_COLOUR, lw=2, label=f"model (AUROC = {roc_auc_score(y, p):.3f})")
        if threshold is not None:
            flagged = p >= threshold
            ax.plot(
                flagged[y == 0].mean(), flagged[y == 1].mean(), "ko", ms=7, label=f"threshold {threshold:.2f}"
            )
    else:
        ax.text(0.5, 0.5, "one class only: ROC undefined", ha="center", va="center", transform=ax.transAxes)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.set_xlabel("false-positive rate (real flagged as AI)")
    ax.set_ylabel("true-positive rate (AI detected)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_pr(y_true, prob, path, title: str = "Precision-recall curve", threshold: float | None = None) -> Path:
    y, p = np.asarray(y_true).astype(int), np.asarray(prob, dtype=float)
    fig = new_figure()
    ax = fig.add_subplot()
    if _both_classes(y):
        precision, recall, _ = precision_recall_curve(y, p)
        ax.step(recall, precision, where="post", color=FAKE_COLOUR, lw=2,
                label=f"model (AP = {average_precision_score(y, p):.3f})")
        if threshold is not None:
            flagged = p >= threshold
            if flagged.any():
                ax.plot(flagged[y == 1].mean(), y[flagged].mean(), "ko", ms=7, label=f"threshold {threshold:.2f}")
    else:
        ax.text(0.5, 0.5, "one class only: PR curve undefined", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(y.mean() if y.size else 0, ls="--", color="grey", label=f"chance (prevalence {y.mean():.2f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.set_xlabel("recall (AI detected)")
    ax.set_ylabel("precision (flagged that are AI)")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_calibration(y_true, prob, path, title: str = "Reliability diagram", n_bins: int = 15) -> Path:
    """Observed fraction of AI images per predicted-probability bin, with the bin counts underneath."""
    y, p = np.asarray(y_true).astype(int), np.asarray(prob, dtype=float)
    fig = new_figure(6.0, 6.0)
    ax, ax_hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.plot(mean_pred, frac_pos, "o-", color=FAKE_COLOUR, label="model")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.set_ylabel("observed fraction AI-generated")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    bins = np.linspace(0, 1, n_bins + 1)
    ax_hist.hist([p[y == 0], p[y == 1]], bins=bins, stacked=True, color=[REAL_COLOUR, FAKE_COLOUR],
                 label=["real", "AI-generated"])
    ax_hist.set_xlabel("predicted probability of AI-generated")
    ax_hist.set_ylabel("images")
    ax_hist.legend(loc="upper center", ncols=2, fontsize="small")
    return save(fig, path)


def plot_rate_bars(
    rows: Sequence[Mapping],
    value_key: str,
    path,
    title: str,
    xlabel: str,
    label_key: str = "group",
    count_key: str = "n",
    lo_key: str | None = None,
    hi_key: str | None = None,
    reference: float | None = None,
    reference_label: str = "overall",
    colour: str = FAKE_COLOUR,
    ylabel: str = "group",
) -> Path:
    """Horizontal bars of a rate per group (rows with NaN values are skipped), with optional interval whiskers,
    the group size in each tick label, and an optional vertical reference line. The x axis zooms to the data."""
    rows = [r for r in rows if np.isfinite(r[value_key])]
    fig = new_figure(7.0, max(2.8, 0.3 * len(rows) + 1.9))
    ax = fig.add_subplot()
    labels = [f"{r[label_key]} (n={r[count_key]})" for r in rows]
    values = np.array([r[value_key] for r in rows], dtype=float)
    ypos = np.arange(len(rows))
    xerr, top = None, values
    if lo_key and hi_key and rows:
        lo = np.array([r[lo_key] for r in rows], dtype=float)
        hi = np.array([r[hi_key] for r in rows], dtype=float)
        xerr, top = np.vstack([values - lo, hi - values]), hi
    ax.barh(ypos, values, xerr=xerr, color=colour, alpha=0.8, ecolor="black", capsize=2,
            label=xlabel + (" (95% CI)" if xerr is not None else ""))
    if reference is not None and np.isfinite(reference):
        ax.axvline(reference, ls="--", color="black", label=f"{reference_label} = {reference:.3f}")
        top = np.append(top, reference)
    upper = min(1.0, float(np.nanmax(top)) * 1.1 + 0.02) if top.size else 1.0
    ax.set_yticks(ypos, labels, fontsize="small")
    ax.invert_yaxis()
    ax.set(xlim=(0, upper), title=title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    # below the axes: inside, it would cover bars of rates near 0 or 1
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=2, fontsize="small", frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def plot_generator_detection(rows: Sequence[Mapping], path, title: str = "Detection rate per generator",
                             overall: float | None = None) -> Path:
    """Rows from :func:`negate.evaluation.metrics.group_rates` over generators (only those with fakes are drawn)."""
    rows = [r for r in rows if r["n_fake"] > 0]
    return plot_rate_bars(rows, "detection_rate", path, title, "detection rate (TPR)", label_key="group",
                          count_key="n_fake", lo_key="detection_lo", hi_key="detection_hi",
                          reference=overall, reference_label="overall TPR", colour=FAKE_COLOUR, ylabel="generator")


def plot_source_fpr(rows: Sequence[Mapping], path, title: str = "False-positive rate per source",
                    overall: float | None = None) -> Path:
    """Rows from :func:`negate.evaluation.metrics.group_rates` over sources (only those with reals are drawn)."""
    rows = [r for r in rows if r["n_real"] > 0]
    return plot_rate_bars(rows, "fpr", path, title, "false-positive rate", label_key="group", count_key="n_real",
                          lo_key="fpr_lo", hi_key="fpr_hi", reference=overall, reference_label="overall FPR",
                          colour=REAL_COLOUR, ylabel="source")


def plot_robustness(results: Mapping[str, Mapping], path, title: str = "Robustness to perturbations",
                    clean_auroc: float | None = None, metric: str = "auroc") -> Path:
    """Bar per perturbation of ``results[name][metric]`` (whiskers from ``results[name]["ci"][metric]`` if present)."""
    names = list(results)
    values = np.array([results[k][metric] for k in names], dtype=float)
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    xerr = None
    cis = [results[k].get("ci", {}).get(metric) for k in names]
    if names and all(ci is not None for ci in cis):
        lo, hi = np.array(cis, dtype=float).T
        xerr = np.vstack([values - lo, hi - values])
    x = np.arange(len(names))
    ax.bar(x, values, yerr=xerr, color="#2ca02c", alpha=0.85, ecolor="black", capsize=3,
           label=f"{metric.upper()} under perturbation" + (" (95% CI)" if xerr is not None else ""))
    if clean_auroc is not None and np.isfinite(clean_auroc):
        ax.axhline(clean_auroc, ls="--", color="black", label=f"clean {metric.upper()} = {clean_auroc:.3f}")
    ax.axhline(0.5, ls=":", color="grey", label="chance")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(ylim=(0, 1.05), title=title)
    ax.set_xlabel("perturbation")
    ax.set_ylabel(metric.upper())
    ax.legend(loc="lower left", fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)
