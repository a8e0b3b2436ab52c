"""Where negate's own files live: the Hydra config tree and the shipped sample set."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = str(PACKAGE_DIR.parent / "configs")  # absolute, so entry points work from any cwd and via the console script
SAMPLE_DIR = PACKAGE_DIR / "sample_data"
