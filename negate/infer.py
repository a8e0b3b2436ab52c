"""``python -m negate.infer ckpt=latest|FOLDER path=FILE_OR_DIR [output=table|csv|json]``.

Exit status: 0 when every input was scored, 1 when some failed (listed with their reasons), 2 when none could be
scored or the model folder was refused.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="infer")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from negate.errors import exit_on_user_error
    from negate.inference import infer

    with exit_on_user_error():
        rows = infer(cfg, Path(HydraConfig.get().runtime.output_dir))
    if any(r["error"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
