"""Where a run's config, metrics and plots go besides its folder: ``logger=none|csv|wandb``.

The loggers live in :mod:`negate.loggers`, one module each, registered in :data:`negate.plugins.LOGGERS` under the
``kind`` their ``configs/logger/<option>.yaml`` names.
"""

from __future__ import annotations

from pathlib import Path

from negate.loggers.base import RunLogger
from negate.plugins import LOGGERS, plain

__all__ = ["RunLogger", "create_run_logger"]


def create_run_logger(logger_cfg, run_dir: Path, config: dict) -> RunLogger:
    """The run logger ``logger_cfg`` selects (``kind`` + options); no ``kind`` means none."""
    options = plain(logger_cfg)
    kind = options.pop("kind", "none")
    try:
        cls = LOGGERS.get(kind)
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    return cls(run_dir, config, **options)
