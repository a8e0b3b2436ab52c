"""One evaluation report: report.md (tables), metrics.json (every number) and PNG plots in one folder."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from negate.evaluation import plots
from negate.evaluation.metrics import (
    CI_METRICS,
    binary_metrics,
    bootstrap_ci,
    confusion,
    group_rates,
    per_format_metrics,
    wilson_interval,
)
from negate.evaluation.tables import format_cell, markdown_table

__all__ = ["write_report", "markdown_table", "log_report_to_wandb"]

META_KEYS = ("generator", "source", "format", "path")
METRIC_LABELS = {
    "auroc": "AUROC",
    "ap": "average precision",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "tpr_at_1fpr": "TPR @ 1% FPR",
    "tpr_at_5fpr": "TPR @ 5% FPR",
    "ece": "ECE (15 bins)",
    "tpr": "TPR (detection rate) @ threshold",
    "fpr": "FPR @ threshold",
}
# Robustness rows get fewer resamples: there are several of them and the CI is only a whisker on a bar.
ROBUSTNESS_BOOT_CAP = 200
N_MISTAKES = 10


def _json_safe(x):
    """NaN/inf -> null and numpy scalars -> Python, so metrics.json is strict JSON."""
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x


def _check_meta(meta: Mapping[str, Sequence] | None, n: int) -> dict[str, list]:
    out = {}
    for key in META_KEYS:
        if meta is None or key not in meta or meta[key] is None:
            continue
        values = list(meta[key])
        if len(values) != n:
            raise ValueError(f"meta[{key!r}] has {len(values)} entries but there are {n} predictions")
        out[key] = [str(v) for v in values]
    return out


def _mistakes(y: np.ndarray, p: np.ndarray, threshold: float, paths: list[str], meta: dict[str, list]) -> dict:
    """The most confident errors: reals with the highest probability, fakes with the lowest."""

    def rows(idx: np.ndarray) -> list[dict]:
        return [{"path": paths[i], "prob": float(p[i]), **{k: meta[k][i] for k in ("generator", "source", "format")
                                                           if k in meta}} for i in idx]

    fp = np.flatnonzero((y == 0) & (p >= threshold))
    fn = np.flatnonzero((y == 1) & (p < threshold))
    return {
        "false_positives": rows(fp[np.argsort(-p[fp], kind="stable")][:N_MISTAKES]),
        "false_negatives": rows(fn[np.argsort(p[fn], kind="stable")][:N_MISTAKES]),
    }


def write_report(
    out_dir,
    y_true,
    prob,
    threshold: float,
    meta: Mapping[str, Sequence] | None,
    title: str,
    robustness: Mapping[str, tuple] | None = None,
    extra: Mapping | None = None,
    n_boot: int = 1000,
    camera: Sequence[bool] | None = None,
    seed: int = 0,
    warnings: Sequence[str] = (),
) -> dict:
    """Score predictions and write ``report.md``, ``metrics.json`` and plots into ``out_dir``.

    ``meta`` holds per-row sequences under any of "generator", "source", "format", "path" (other keys are
    ignored); each present key adds its breakdown. ``robustness`` maps a perturbation name to ``(y, prob)``
    scored on the perturbed images. ``extra`` (JSON-serialisable) is stored as is. ``warnings`` are shown at the top
    of the report (e.g. evaluation images the model was trained on). Returns the metrics dict
    (NaN where undefined; metrics.json writes those as null).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(prob, dtype=np.float64).ravel()
    overall = binary_metrics(y, p, threshold)
    meta_ = _check_meta(meta, y.size)

    metrics: dict = {
        "title": title,
        "threshold": float(threshold),
        "overall": overall,
        "ci": bootstrap_ci(y, p, threshold, n_boot=n_boot, seed=seed),
        "n_boot": n_boot,
        "confusion": confusion(y, p, threshold),
    }
    if "generator" in meta_:
        metrics["per_generator"] = group_rates(y, p, threshold, meta_["generator"])
    if "source" in meta_:
        metrics["per_source"] = group_rates(y, p, threshold, meta_["source"])
    if "format" in meta_:
        metrics["per_format"] = per_format_metrics(y, p, threshold, meta_["format"])
    if "path" in meta_:
        metrics["mistakes"] = _mistakes(y, p, threshold, meta_["path"], meta_)
    if robustness:
        rob = {}
        for name, (y_r, p_r) in robustness.items():
            m = binary_metrics(y_r, p_r, threshold)
            m["ci"] = bootstrap_ci(y_r, p_r, threshold, n_boot=min(n_boot, ROBUSTNESS_BOOT_CAP), seed=seed)
            m["delta_auroc"] = m["auroc"] - overall["auroc"]
            rob[str(name)] = m
        metrics["robustness"] = rob
    if camera is not None:
        cam = np.asarray(camera, dtype=bool).ravel() & (y == 0)
        if cam.any():
            k, n = int((p[cam] >= threshold).sum()), int(cam.sum())
            lo, hi = wilson_interval(k, n)
            metrics["camera_fpr"] = {"fpr": k / n, "n": n, "fpr_lo": lo, "fpr_hi": hi}
    if extra:
        metrics["extra"] = dict(extra)
    if warnings:
        metrics["warnings"] = list(warnings)

    metrics["plots"] = _write_plots(out, y, p, threshold, metrics, title)
    (out / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=2))
    (out / "report.md").write_text(_render_markdown(metrics))
    return metrics


def _write_plots(out: Path, y, p, threshold, metrics: dict, title: str) -> list[str]:
    made = [
        plots.plot_roc(y, p, out / "roc.png", f"{title}: ROC", threshold=threshold),
        plots.plot_pr(y, p, out / "pr.png", f"{title}: precision-recall", threshold=threshold),
        plots.plot_calibration(y, p, out / "calibration.png", f"{title}: reliability diagram"),
    ]
    overall = metrics["overall"]
    if any(r["n_fake"] for r in metrics.get("per_generator", [])):
        made.append(plots.plot_generator_detection(metrics["per_generator"], out / "per_generator.png",
                                                   f"{title}: detection rate per generator", overall["tpr"]))
    if any(r["n_real"] for r in metrics.get("per_source", [])):
        made.append(plots.plot_source_fpr(metrics["per_source"], out / "per_source_fpr.png",
                                          f"{title}: false-positive rate per source", overall["fpr"]))
    if metrics.get("robustness"):
        made.append(plots.plot_robustness(metrics["robustness"], out / "robustness.png",
                                          f"{title}: robustness", clean_auroc=overall["auroc"]))
    return [path.name for path in made]


def _render_markdown(m: dict) -> str:
    o, ci = m["overall"], m["ci"]
    parts = [
        f"# {m['title']}\n",
        *[f"> **Warning:** {w}.\n" for w in m.get("warnings", [])],
        f"{o['n']} images ({o['n_pos']} AI-generated, {o['n_neg']} real); an image is called AI-generated when "
        f"p >= {m['threshold']:.3f}. Intervals: 95% percentile bootstrap, {m['n_boot']} stratified resamples.\n",
        "## Main metrics\n",
        markdown_table(
            [{"metric": METRIC_LABELS[k], "value": o[k], "ci": ci[k]} for k in CI_METRICS],
            {"metric": "metric", "value": "value", "ci": "95% CI"},
        ),
        "## Confusion matrix\n",
        markdown_table(
            [
                {"": "real", "pr": m["confusion"]["tn"], "pf": m["confusion"]["fp"]},
                {"": "AI-generated", "pr": m["confusion"]["fn"], "pf": m["confusion"]["tp"]},
            ],
            {"": "true \\ predicted", "pr": "real", "pf": "AI-generated"},
        ),
    ]
    rate_cols = {"group": "group", "n": "n"}
    if "camera_fpr" in m:
        c = m["camera_fpr"]
        parts += [
            "## Camera photos flagged as AI-generated\n",
            f"False-positive rate on {c['n']} real camera photos at the threshold: **{format_cell(c['fpr'])}** "
            f"(95% CI {format_cell(c['fpr_lo'])}–{format_cell(c['fpr_hi'])}). This is the costly error.\n",
        ]
    if "per_generator" in m:
        rows = [r for r in m["per_generator"] if r["n_fake"]]
        parts += [
            "## Detection rate per generator\n",
            "Share of each generator's AI images flagged at the threshold (Wilson 95% interval).\n",
            markdown_table([{**r, "ci": (r["detection_lo"], r["detection_hi"])} for r in rows],
                           {"group": "generator", "n_fake": "AI images", "detection_rate": "detection rate",
                            "ci": "95% CI", "mean_prob": "mean p"}),
        ]
        reals = [r for r in m["per_generator"] if not r["n_fake"]]
        if reals:
            parts.append(f"({len(reals)} generator label(s) with real images only: see the source table.)\n")
    if "per_source" in m:
        parts += [
            "## False-positive rate per source\n",
            "Share of each source's real images wrongly flagged (Wilson 95% interval); detection rate for sources "
            "with AI images; AUROC where a source has both classes.\n",
            markdown_table([{**r, "fpr_ci": (r["fpr_lo"], r["fpr_hi"])} for r in m["per_source"]],
                           {**rate_cols, "group": "source", "n_real": "real", "fpr": "FPR", "fpr_ci": "FPR 95% CI",
                            "n_fake": "AI", "detection_rate": "detection rate", "auroc": "AUROC"}),
        ]
    if "per_format" in m:
        parts += [
            "## Per file format\n",
            "A large gap between formats means the model reads the container, not the image.\n",
            markdown_table(m["per_format"], {"format": "format", "n": "n", "n_pos": "AI", "n_neg": "real",
                                             "auroc": "AUROC", "accuracy": "accuracy", "tpr": "TPR", "fpr": "FPR"}),
        ]
    if "robustness" in m:
        rows = [{"name": k, **v, "auroc_ci": v["ci"]["auroc"]} for k, v in m["robustness"].items()]
        parts += [
            "## Robustness\n",
            f"Same threshold, images perturbed before scoring (clean AUROC {format_cell(o['auroc'])}).\n",
            markdown_table(rows, {"name": "perturbation", "auroc": "AUROC", "auroc_ci": "AUROC 95% CI",
                                  "delta_auroc": "Δ AUROC", "tpr": "TPR", "fpr": "FPR", "ece": "ECE"}),
        ]
    if "mistakes" in m:
        cols = {"path": "path", "prob": "p", "generator": "generator", "source": "source", "format": "format"}
        parts += [
            "## Most confident mistakes\n",
            "### Real images flagged as AI-generated\n",
            markdown_table(m["mistakes"]["false_positives"], cols) if m["mistakes"]["false_positives"] else "none\n",
            "### AI-generated images missed\n",
            markdown_table(m["mistakes"]["false_negatives"], cols) if m["mistakes"]["false_negatives"] else "none\n",
        ]
    if "extra" in m:
        parts += ["## Run details\n", "```json\n" + json.dumps(_json_safe(m["extra"]), indent=2) + "\n```\n"]
    parts += ["## Plots\n"] + [f"![{name}]({name})\n" for name in m["plots"]]
    return "\n".join(parts)


def log_report_to_wandb(run, metrics: Mapping, out_dir, prefix: str = "test") -> None:
    """Log a report's scalars (with CI bounds), breakdown tables and PNGs to an active wandb run."""
    import wandb

    scalars = {f"{prefix}/{k}": v for k, v in metrics["overall"].items() if isinstance(v, (int, float))}
    for k, (lo, hi) in metrics.get("ci", {}).items():
        scalars[f"{prefix}/{k}_ci_lo"], scalars[f"{prefix}/{k}_ci_hi"] = lo, hi
    for name, r in metrics.get("robustness", {}).items():
        scalars[f"{prefix}/robustness/{name}/auroc"] = r["auroc"]
    payload: dict = {k: v for k, v in scalars.items() if v is None or math.isfinite(v)}
    for key in ("per_generator", "per_source", "per_format"):
        rows = metrics.get(key)
        if rows:
            cols = list(rows[0])
            data = [[_json_safe(r[c]) for c in cols] for r in rows]
            payload[f"{prefix}/{key}"] = wandb.Table(columns=cols, data=data)
    for png in sorted(Path(out_dir).glob("*.png")):
        payload[f"{prefix}/plots/{png.stem}"] = wandb.Image(str(png))
    run.log(payload)
    run.summary.update({k: v for k, v in scalars.items() if v is not None and math.isfinite(v)})
