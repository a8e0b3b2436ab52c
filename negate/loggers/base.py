"""The run-logger interface; the base class itself is ``logger=none`` (logs nothing)."""

from __future__ import annotations

from pathlib import Path

from negate.plugins import LOGGERS


def flatten_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Nested metrics -> ``{"a/b": value}`` for the numbers among them."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


@LOGGERS.register("none")
class RunLogger:
    """Built as ``cls(run_dir, config, **options)``; this base logs nothing."""

    def __init__(self, run_dir: Path | None = None, config: dict | None = None):
        pass

    def log_metrics(self, metrics: dict, prefix: str = "") -> None: ...

    def log_images(self, images: dict[str, Path]) -> None: ...

    def finish(self) -> None: ...
