"""Where a run's config, metrics and plots go besides its folder: ``logger=none|csv|wandb``.

W&B needs no account: ``mode: offline`` (the default) writes ``<run dir>/wandb/offline-run-*`` that ``wandb sync``
uploads later. In a Hydra multirun, runs are grouped by the sweep folder's name.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


class RunLogger:
    """No-op base: ``logger=none``."""

    def log_metrics(self, metrics: dict, prefix: str = "") -> None: ...

    def log_images(self, images: dict[str, Path]) -> None: ...

    def finish(self) -> None: ...


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
            writer.writerows(sorted(_flatten(metrics, prefix).items()))


class WandbRunLogger(RunLogger):
    def __init__(self, run_dir: Path, config: dict, project: str, entity: str | None, mode: str, group: str | None,
                 tags: list[str], name: str | None = None):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, entity=entity, mode=mode, dir=str(run_dir), config=config,
                              group=group, tags=list(tags), name=name, reinit="finish_previous")

    def log_metrics(self, metrics: dict, prefix: str = "") -> None:
        self.run.log(_flatten(metrics, prefix))

    def log_images(self, images: dict[str, Path]) -> None:
        self.run.log({name: self.wandb.Image(str(path)) for name, path in images.items() if Path(path).exists()})

    def finish(self) -> None:
        self.run.finish()


def create_run_logger(logger_cfg, run_dir: Path, config: dict) -> RunLogger:
    kind = logger_cfg.get("kind", "none")
    if kind == "none":
        return RunLogger()
    if kind == "csv":
        return CsvRunLogger(run_dir, config)
    if kind == "wandb":
        group, name = None, None
        try:
            from hydra.core.hydra_config import HydraConfig

            hc = HydraConfig.get()
            if str(hc.mode) == "RunMode.MULTIRUN":
                group, name = Path(hc.sweep.dir).name, f"{Path(hc.sweep.dir).name}-{hc.job.num}"
        except ValueError:
            pass
        return WandbRunLogger(run_dir, config, logger_cfg.project, logger_cfg.get("entity"), logger_cfg.mode, group,
                              logger_cfg.get("tags") or [], name)
    raise ValueError(f"unknown logger kind {kind!r}: use none, csv or wandb")
