"""``negate infer PATH... [-m CKPT] [output=table|csv|json|jsonl] [output_file=FILE|-]``, or
``python -m negate.infer path=PATH (or path=[A,B]) ckpt=...``.

Exit status: 0 when every input was scored, 1 when some could not be read (listed with their reasons), 2 on a usage or
config error, a missing or refused model folder, or when no input could be scored; 128 + the signal number when
interrupted (130 for Ctrl-C, 143 for SIGTERM).
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers

register_resolvers()

# The PATH arguments of ``negate infer``: the console script runs this entry point in its own process and hands them
# over here, not through Hydra's override grammar (thousands of paths from a shell glob parse slowly and need quoting).
CLI_PATHS: list[str] = []


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="infer")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from negate.errors import exit_on_user_error
    from negate.inference import infer

    with exit_on_user_error():
        rows = infer(cfg, Path(HydraConfig.get().runtime.output_dir), CLI_PATHS)
    if any(r["error"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    from negate.entry import run

    run("infer", sys.argv[1:], main)
