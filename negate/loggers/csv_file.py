"""``logger=csv``: ``<run dir>/metrics.csv`` (metric, value rows) beside ``config.json``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from negate.loggers.base import RunLogger, flatten_metrics
from negate.plugins import LOGGERS


@LOGGERS.register("csv")
class CsvRunLogger(RunLogger):
    def __init__(self, run_dir: Path, config: dict):
        self.path = Path(run_dir) / "metrics.csv"
        (Path(run_dir) / "config.json").write_text(json.dumps(config, indent=1, default=str))

    def log_metrics(self, metrics: dict, prefix: str = "") -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["metric", "value"])
            writer.writerows(sorted(flatten_metrics(metrics, prefix).items()))
