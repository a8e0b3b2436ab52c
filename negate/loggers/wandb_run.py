"""``logger=wandb``: a Weights & Biases run. No account needed: ``mode: offline`` (the default) writes
``<run dir>/wandb/offline-run-*`` that ``wandb sync`` uploads later. In a Hydra multirun, runs are grouped by the
sweep folder's name."""

from __future__ import annotations

from pathlib import Path

from negate.loggers.base import RunLogger, flatten_metrics
from negate.plugins import LOGGERS


def _sweep_group() -> tuple[str | None, str | None]:
    """``(group, run name)`` inside a Hydra multirun, else ``(None, None)``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        if str(hc.mode) == "RunMode.MULTIRUN":
            return Path(hc.sweep.dir).name, f"{Path(hc.sweep.dir).name}-{hc.job.num}"
    except ValueError:
        pass
    return None, None


@LOGGERS.register("wandb")
class WandbRunLogger(RunLogger):
    def __init__(self, run_dir: Path, config: dict, project: str = "negate", entity: str | None = None,
                 mode: str = "offline", tags: list[str] | None = None):
        import wandb

        group, name = _sweep_group()
        self.wandb = wandb
        self.run = wandb.init(project=project, entity=entity, mode=mode, dir=str(run_dir), config=config,
                              group=group, tags=list(tags or []), name=name, reinit="finish_previous")

    def log_metrics(self, metrics: dict, prefix: str = "") -> None:
        self.run.log(flatten_metrics(metrics, prefix))

    def log_images(self, images: dict[str, Path]) -> None:
        self.run.log({name: self.wandb.Image(str(path)) for name, path in images.items() if Path(path).exists()})

    def finish(self) -> None:
        self.run.finish()
