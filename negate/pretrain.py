"""``python -m negate.pretrain [data=...] [feature=[...]]``: per-feature class separation, ranked, with plots."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="pretrain")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from negate.cache import CacheWriteError
    from negate.pretraining import pretrain

    try:
        pretrain(cfg, Path(HydraConfig.get().runtime.output_dir))
    except CacheWriteError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    from negate.entry import run

    run("pretrain", sys.argv[1:], main)
