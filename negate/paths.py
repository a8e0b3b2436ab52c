"""Where negate's own files live: the Hydra config tree, the shipped sample set and model, and the user's home.

The config tree is the top-level ``configs/`` of the source tree; a wheel (``pip install .``) ships it inside the
package as ``negate/configs`` (setup.py maps the package ``negate.configs`` to ``configs/``). ``CONFIG_DIR`` is that
packaged copy when it exists, else the checkout's ``configs/`` (editable install, ``PYTHONPATH``): an absolute path, so
every entry point finds it from any directory.

``NEGATE_HOME`` (default ``$XDG_DATA_HOME/negate``, i.e. ``~/.local/share/negate``) is where ``negate train`` registers
model folders (``models/<name>/``), so ``ckpt=latest`` and ``ckpt=NAME`` work from any directory. Run folders and the
feature cache stay under ``outputs/`` of the current directory (Hydra's convention).
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGED_CONFIG_DIR = PACKAGE_DIR / "configs"  # in an installed wheel
CHECKOUT_CONFIG_DIR = PACKAGE_DIR.parent / "configs"  # in a source checkout
CONFIG_DIR = str(PACKAGED_CONFIG_DIR if (PACKAGED_CONFIG_DIR / "train.yaml").is_file() else CHECKOUT_CONFIG_DIR)
SAMPLE_DIR = PACKAGE_DIR / "sample_data"
SHIPPED_MODEL_DIR = PACKAGE_DIR / "shipped_model"  # the pretrained model shipped with the package (ckpt=shipped)


def negate_home() -> Path:
    """``$NEGATE_HOME``, else ``$XDG_DATA_HOME/negate``, else ``~/.local/share/negate`` (not created here)."""
    home = os.environ.get("NEGATE_HOME")
    if home:
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data).expanduser() if data and Path(data).expanduser().is_absolute() else Path.home() / ".local" / "share"
    return base / "negate"


def home_models_dir() -> Path:
    return negate_home() / "models"


def unique_run_dir(base: str) -> str:
    """``<base>_<6 hex digits>``, created here with an exclusive ``mkdir`` (retried on a clash), so runs started in the
    same second, in one process or many, never share a run folder. If the parent cannot be created the name is
    returned as is and Hydra reports the failure when it creates the folder."""
    import secrets

    parent = Path(base).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return f"{base}_{secrets.token_hex(3)}"
    for _ in range(1000):
        candidate = f"{base}_{secrets.token_hex(3)}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        except OSError:
            return candidate
        return candidate
    raise FileExistsError(f"cannot create a new run folder next to {base}")
