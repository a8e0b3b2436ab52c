"""The config tree ships inside the wheel: a non-editable ``pip install .`` runs from any directory.

``configs/`` stays at the top level of the source tree; setup.py maps it to the package ``negate.configs``, and
``negate.paths.CONFIG_DIR`` is the packaged copy when installed, the checkout's ``configs/`` otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from negate.paths import CONFIG_DIR, PACKAGE_DIR

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "negate", "configs")


def test_a_checkout_reads_its_top_level_configs():
    assert Path(CONFIG_DIR) == REPO / "configs" and not (PACKAGE_DIR / "configs").exists()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the source tree (the build never writes into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(out), str(src)],
                   check=True, capture_output=True, text=True)
    (whl,) = out.glob("negate-*.whl")
    return whl


@pytest.mark.slow
def test_the_wheel_ships_the_config_tree_and_every_module(wheel):
    with zipfile.ZipFile(wheel) as zf:
        shipped = {name: zf.read(name) for name in zf.namelist()}
    configs = {f"negate/configs/{p.relative_to(REPO / 'configs').as_posix()}": p.read_bytes()
               for p in sorted((REPO / "configs").rglob("*.yaml"))}
    assert {k: v for k, v in shipped.items() if k.startswith("negate/configs/")} == configs
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "negate").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= set(shipped)
    assert "negate/sample_data/MANIFEST.tsv" in shipped
    model = {p.relative_to(REPO).as_posix() for p in (REPO / "negate" / "shipped_model").rglob("*") if p.is_file()}
    assert model and model <= set(shipped)  # every file of the shipped model, its member folders included


@pytest.mark.slow
def test_the_installed_wheel_runs_from_another_directory(wheel, tmp_path):
    """Installed non-editable (``--target``; the dependencies are this environment's), run where no checkout is."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "NEGATE_HOME": str(tmp_path / "home")}
    where = subprocess.run([sys.executable, "-c", "import negate.paths as p; print(p.__file__); print(p.CONFIG_DIR)"],
                           cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert where == [str(target / "negate" / "paths.py"), str(target / "negate" / "configs")]
    proc = subprocess.run([sys.executable, "-m", "negate.cli", "train", "--cfg", "job", "experiment=handcrafted"],
                          cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "xgboost" in proc.stdout.lower() and "protocol: holdout" in proc.stdout
    assert not (cwd / "outputs").exists() or not any((cwd / "outputs").rglob("*.pt"))
