"""``python -m negate.train [overrides]``: extract features, fit a detector, write a dated model folder."""

import sys

import hydra
from omegaconf import DictConfig

from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    from negate.errors import exit_on_user_error
    from negate.training import train

    with exit_on_user_error():
        metrics = train(cfg)
    return (metrics["test"] or metrics["val"])["auroc"]  # the value a Hydra sweeper would optimise


if __name__ == "__main__":
    from negate.entry import run

    run("train", sys.argv[1:], main)
