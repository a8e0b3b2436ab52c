"""``python -m negate.evaluate ckpt=FOLDER data=...`` (a saved model) or ``protocol=cv`` (leave-one-group-out CV)."""

from pathlib import Path

import sys

import hydra
from omegaconf import DictConfig

from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from negate.errors import exit_on_user_error
    from negate.evaluating import evaluate

    with exit_on_user_error():
        evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    from negate.entry import run

    run("evaluate", sys.argv[1:], main)
