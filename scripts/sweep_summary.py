#!/usr/bin/env python
"""Summarise a Hydra multirun: one row per run (its overrides and metrics), sorted by a metric.

    python scripts/sweep_summary.py                       # newest sweep under outputs/multirun
    python scripts/sweep_summary.py outputs/multirun/2025-01-01/12-00-00 --metric loso.auroc_mean

A run is any folder under the sweep holding ``.hydra/overrides.yaml``. Its ``metrics.json`` is read for the
scalar values under "test" (and "loso" if present; nested dicts flatten to dotted keys, lists are skipped); a
metrics.json written by ``negate.evaluation.report.write_report`` (no "test", an "overall" section) also works.
Runs without a readable metrics.json are listed as failed, below the others. Writes ``summary.md`` and
``summary.csv`` into the sweep folder (or ``--out``) and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import yaml

METRIC_SECTIONS = ("test", "loso")


def find_latest_multirun(root: str | Path = "outputs/multirun") -> Path:
    """The most recently modified sweep folder under ``root`` (a folder whose runs hold .hydra/overrides.yaml)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no multirun folder at {root}")
    sweeps = {Path(p).parent.parent.parent for p in root.glob("**/.hydra/overrides.yaml")}
    sweeps = {s for s in sweeps if s != root.parent and root in (s, *s.parents)}
    if not sweeps:
        raise FileNotFoundError(f"no Hydra runs (*/.hydra/overrides.yaml) under {root}")
    # Hydra's default sweep dirs are named DATE/TIME, so the path breaks ties between equal mtimes.
    return max(sweeps, key=lambda s: (s.stat().st_mtime, str(s)))


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif isinstance(value, bool):
        out[prefix] = value
    elif isinstance(value, (int, float)) or value is None:
        out[prefix] = float("nan") if value is None else value


def parse_overrides(path: Path) -> dict[str, str]:
    """``["model.lr=0.01", "feature=[a,b]", "+x=1"]`` -> ``{"model.lr": "0.01", "feature": "[a,b]", "x": "1"}``."""
    items = yaml.safe_load(path.read_text()) or []
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def load_run(run_dir: Path) -> dict:
    """One row: ``run``, ``status`` ("ok" / "failed"), ``error``, overrides, flattened metrics."""
    row: dict = {"run": run_dir.name, "status": "ok", "error": ""}
    overrides_path = run_dir / ".hydra" / "overrides.yaml"
    try:
        row["overrides"] = parse_overrides(overrides_path)
    except (OSError, yaml.YAMLError) as exc:
        row["overrides"] = {}
        row["status"], row["error"] = "failed", f"overrides.yaml unreadable: {exc}"
    metrics_path = run_dir / "metrics.json"
    row["metrics"] = {}
    if not metrics_path.is_file():
        row["status"], row["error"] = "failed", "no metrics.json"
        return row
    try:
        data = json.loads(metrics_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        row["status"], row["error"] = "failed", f"metrics.json unreadable: {exc}"
        return row
    if isinstance(data, dict) and "test" not in data and isinstance(data.get("overall"), dict):
        data = {**data, "test": data["overall"]}  # a bare write_report() metrics.json
    if not isinstance(data, dict) or not any(isinstance(data.get(s), dict) for s in METRIC_SECTIONS):
        row["status"], row["error"] = "failed", f"metrics.json has none of the sections {METRIC_SECTIONS}"
        return row
    for section in METRIC_SECTIONS:
        if section in data:
            _flatten(section, data[section], row["metrics"])
    return row


def collect_runs(sweep_dir: str | Path) -> list[dict]:
    sweep_dir = Path(sweep_dir)
    run_dirs = sorted({p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")}, key=_natural_key)
    return [load_run(d) for d in run_dirs if d != sweep_dir]


def _natural_key(path: Path) -> tuple:
    rel = path.name
    return (0, int(rel), "") if rel.isdigit() else (1, 0, str(path))


def _resolve_metric(metric: str) -> str:
    return metric if "." in metric else f"test.{metric}"


def sort_runs(rows: list[dict], metric: str = "test.auroc", ascending: bool = False) -> list[dict]:
    """Successful runs by ``metric`` (missing/NaN values last), then failed runs in their original order."""
    metric = _resolve_metric(metric)

    def key(r: dict):
        v = r["metrics"].get(metric)
        finite = isinstance(v, (int, float)) and math.isfinite(v)
        return (r["status"] != "ok", not finite, (v if ascending else -v) if finite else 0.0)

    return sorted(rows, key=key)


HEADLINE = ("test.auroc", "test.ap", "test.tpr_at_5fpr", "test.camera_fpr", "loso.overall.auroc", "loso.jpeg75.auroc",
            "loso.overall.camera_fpr", "loso.camera_fpr_at_fold_thresholds", "loso.auroc_by_format.JPEG",
            "loso.auroc_by_format.PNG")


def common_overrides(rows: list[dict]) -> dict[str, str]:
    """Overrides every run shares (shown once above the table instead of as columns)."""
    keys = set.intersection(*(set(r["overrides"]) for r in rows)) if rows else set()
    return {k: rows[0]["overrides"][k] for k in sorted(keys) if len({r["overrides"][k] for r in rows}) == 1}


def table_columns(rows: list[dict], metric: str) -> tuple[list[str], list[str]]:
    """Override keys that differ between runs, and metric keys (sort metric first, then test.*, then loso.*)."""
    metric = _resolve_metric(metric)
    common = common_overrides(rows) if len(rows) > 1 else {}
    override_keys = sorted({k for r in rows for k in r["overrides"]} - set(common))
    metric_keys = sorted({k for r in rows for k in r["metrics"]}, key=lambda k: (k.split(".")[0] != "test", k))
    if metric in metric_keys:
        metric_keys.remove(metric)
    return override_keys, [metric] + metric_keys


def flat_rows(rows: list[dict], metric: str) -> tuple[list[dict], list[str]]:
    override_keys, metric_keys = table_columns(rows, metric)
    columns = ["run", "status", *override_keys, *metric_keys, "error"]
    flat = [
        {"run": r["run"], "status": r["status"], "error": r["error"], **r["overrides"], **r["metrics"]} for r in rows
    ]
    return flat, columns


def write_summary(rows: list[dict], out_dir: str | Path, metric: str = "test.auroc") -> tuple[Path, Path]:
    from negate.evaluation.tables import markdown_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flat, columns = flat_rows(rows, metric)
    n_failed = sum(r["status"] != "ok" for r in rows)
    key = _resolve_metric(metric)
    headline = [c for c in columns if c in ("run", "status", "error") or c == key or c in HEADLINE
                or not any(c in r["metrics"] for r in rows)]  # overrides, the sort metric, the headline metrics
    common = common_overrides(rows) if len(rows) > 1 else {}
    md = out / "summary.md"
    md.write_text(
        f"# Sweep summary: {out}\n\n{len(rows)} runs, {n_failed} failed; sorted by {key}. Every metric is in "
        f"summary.csv.\n\n" + (f"Common to all runs: `{' '.join(f'{k}={v}' for k, v in common.items())}`\n\n"
                                 if common else "") + markdown_table(flat, headline)
    )
    path_csv = out / "summary.csv"
    with open(path_csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(flat)
    return md, path_csv


def print_summary(rows: list[dict], metric: str = "test.auroc", max_metrics: int = 6, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    flat, columns = flat_rows(rows, metric)
    override_keys, metric_keys = table_columns(rows, metric)
    shown = ["run", "status", *override_keys, *metric_keys[:max_metrics]]  # keep the terminal table readable
    table = Table(title=f"{len(rows)} runs sorted by {_resolve_metric(metric)}")
    for col in shown:
        table.add_column(col, justify="right" if col in metric_keys else "left")
    for r in flat:
        cells = []
        for col in shown:
            v = r.get(col, "")
            if isinstance(v, float):
                cells.append(f"{v:.4f}" if math.isfinite(v) else "–")
            else:
                cells.append(str(v))
        table.add_row(*cells, style="dim" if r["status"] != "ok" else None)
    (console or Console()).print(table)
    for r in flat:
        if r["status"] != "ok":
            (console or Console()).print(f"[red]failed[/red] run {r['run']}: {r['error']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", nargs="*", help="multirun sweep folder(s), pooled into one table "
                        "(default: the newest under --root)")
    parser.add_argument("--root", default="outputs/multirun", help="where to look for the newest sweep")
    parser.add_argument("--metric", default="test.auroc", help="sort key, e.g. test.auroc, loso.auroc_mean, ap")
    parser.add_argument("--ascending", action="store_true", help="sort smallest first (e.g. for ece)")
    parser.add_argument("--out", help="folder for summary.md / summary.csv (default: the sweep folder)")
    args = parser.parse_args(argv)
    try:
        sweeps = [Path(d) for d in args.sweep_dir] if args.sweep_dir else [find_latest_multirun(args.root)]
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    sweep = sweeps[0]
    rows = []
    for folder in sweeps:
        runs = collect_runs(folder)
        if len(sweeps) > 1:
            for r in runs:
                r["run"] = f"{folder.name}/{r['run']}"
        rows += runs
    if not rows:
        print(f"no runs (*/.hydra/overrides.yaml) under {sweep}", file=sys.stderr)
        return 1
    rows = sort_runs(rows, args.metric, args.ascending)
    md, path_csv = write_summary(rows, args.out or sweep, args.metric)
    print_summary(rows, args.metric)
    print(f"wrote {md} and {path_csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
