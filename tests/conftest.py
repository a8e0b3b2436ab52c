"""Shared test fixtures. Tests never touch the network, the dev set, the user's outputs/ or their NEGATE_HOME."""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Models that tests train are registered here, never in ~/.local/share/negate. Set at import, before any fixture of any
# scope runs; the subprocesses the tests start inherit it.
_SESSION_HOME = tempfile.mkdtemp(prefix="negate-home-")
os.environ["NEGATE_HOME"] = _SESSION_HOME

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def _real_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour gradients plus sensor-like noise (what a camera sees, roughly)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(3 * xx + rng.uniform(0, 3)), np.cos(2 * yy + rng.uniform(0, 3)), xx * yy], -1)
    img = (base * 0.5 + 0.5) * 200 + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _fake_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A low-resolution image up-sampled 2x by pixel repetition: the periodic trace of a generator's up-sampler."""
    small = _real_like(rng, h // 2, w // 2).astype(np.float32)
    small = small - rng.normal(0, 6, small.shape)  # smoother than a photo
    return np.clip(small.repeat(2, 0).repeat(2, 1), 0, 255).astype(np.uint8)


def write_labelled_folder(root: Path, n_per_class: int = 12, seed: int = 0, sources: int = 3) -> Path:
    """``root/real/<src>/*.jpg`` and ``root/fake/<src>/*.png`` of assorted sizes; returns root."""
    rng = np.random.default_rng(seed)
    for label, maker, ext in (("real", _real_like, "jpg"), ("fake", _fake_like, "png")):
        for i in range(n_per_class):
            h, w = int(rng.integers(96, 200)), int(rng.integers(96, 200))
            folder = root / label / f"{label}_src{i % sources}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(maker(rng, h, w)).save(folder / f"{label}_{i:03d}.{ext}", quality=92)
    return root


def write_manifest(root: Path, name: str = "MANIFEST.tsv") -> Path:
    """A manifest over a labelled folder (path, label, generator, source) with paths relative to ``root``."""
    lines = ["path\tlabel\tgenerator\tsource"]
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".jpg", ".png"):
            rel = path.relative_to(root)
            label = rel.parts[0]
            lines.append(f"{rel}\t{label}\t{'real' if label == 'real' else 'upsampler'}\t{rel.parts[1]}")
    manifest = root / name
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture(scope="session", autouse=True)
def _session_negate_home():
    yield Path(_SESSION_HOME)
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture
def negate_home(tmp_path, monkeypatch) -> Path:
    """A NEGATE_HOME of this test's own (empty): for tests that look at which models are registered."""
    home = tmp_path / "negate_home"
    monkeypatch.setenv("NEGATE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return write_labelled_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def manifest(image_folder) -> Path:
    return write_manifest(image_folder)
