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

    from negate.cache import CacheWriteError
    from negate.inference import NothingScoredError, infer
    from negate.model_folder import ModelFolderError

    try:
        rows = infer(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (ModelFolderError, NothingScoredError, FileNotFoundError, CacheWriteError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if any(r["error"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
