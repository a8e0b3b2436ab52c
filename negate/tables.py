"""Terminal tables (rich) for metrics and predictions."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

MAIN_METRICS = ("auroc", "ap", "accuracy", "balanced_accuracy", "tpr_at_5fpr", "tpr_at_1fpr", "ece", "fpr", "camera_fpr", "n")


def print_metrics_table(metrics: dict, title: str, console: Console | None = None) -> None:
    """Rows: main metrics; columns: the sections of ``metrics`` that hold them (val, test, loso ...)."""
    sections = {k: v for k, v in metrics.items() if isinstance(v, dict) and "auroc" in v}
    for name, value in metrics.items():
        if isinstance(value, dict) and isinstance(value.get("overall"), dict):
            sections[f"{name}"] = value["overall"]
            if isinstance(value.get("jpeg75"), dict):
                sections[f"{name} jpeg75"] = value["jpeg75"]
    table = Table(title=title)
    table.add_column("metric")
    for name in sections:
        table.add_column(name, justify="right")
    for metric in MAIN_METRICS:
        cells = []
        for section in sections.values():
            v = section.get(metric)
            cells.append("-" if v is None else (f"{v:.0f}" if metric == "n" else f"{v:.4f}"))
        table.add_row(metric, *cells)
    (console or Console()).print(table)


def print_predictions(rows: Sequence[dict], console: Console | None = None, limit: int | None = None) -> None:
    table = Table(title="negate infer")
    columns = ["path", "prob_synthetic", "verdict"] + (["provenance"] if any(r.get("provenance") for r in rows) else [])
    for column in columns:
        table.add_column(column, justify="right" if column == "prob_synthetic" else "left", overflow="fold")
    shown = rows if limit is None else rows[:limit]
    for row in shown:
        prob = row.get("prob_synthetic")
        verdict = f"error: {row['error']}" if row.get("error") else row["verdict"]
        if row.get("reason") and not row.get("error"):
            verdict += f" ({row['reason']})"
        cells = [row["path"], "-" if prob is None else f"{prob:.4f}", verdict]
        table.add_row(*cells, *([row.get("provenance", "")] if len(columns) > 3 else []))
    console = console or Console()
    console.print(table)
    if limit is not None and len(rows) > limit:
        console.print(f"... {len(rows) - limit} more rows (use output=csv|json for all)")
