"""Where a run's config, metrics and plots go besides its folder: ``logger=none|csv|wandb``.

The loggers themselves live in :mod:`negate.loggers`, one module each, registered in :data:`negate.plugins.LOGGERS`
under the ``kind`` their ``configs/logger/<option>.yaml`` names.
"""

from __future__ import annotations

from pathlib import Path

from negate.plugins import LOGGERS, plain


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
    """No-op base: ``logger=none``."""

    def __init__(self, run_dir: Path | None = None, config: dict | None = None):
        pass

    def log_metrics(self, metrics: dict, prefix: str = "") -> None: ...

    def log_images(self, images: dict[str, Path]) -> None: ...

    def finish(self) -> None: ...


def create_run_logger(logger_cfg, run_dir: Path, config: dict) -> RunLogger:
    """The run logger ``logger_cfg`` selects (``kind`` + options); no ``kind`` means none."""
    options = plain(logger_cfg)
    kind = options.pop("kind", "none")
    try:
        cls = LOGGERS.get(kind)
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    return cls(run_dir, config, **options)
