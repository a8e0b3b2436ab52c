"""Aligned reconstructions: a real image passed through a generator's autoencoder is a fake with identical content.

For each real training image one (or ``per_real``) region of ``region`` x ``region`` native pixels, at an offset that
is a multiple of 16 (so the real's JPEG block grid lines up), is reconstructed and saved the way the real was saved:
with the real's own JPEG quantisation tables and chroma subsampling (PNG for a lossless real). The detector then
sees the real region and its reconstruction as a pair with the same crop and augmentation, so the only difference
it can learn is the decoder's trace (Aligned Datasets, ICLR 2025; B-Free, CVPR 2025). Files are cached by the real's
content hash, the region and the autoencoder identity, written atomically, so a killed run resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from negate.cache import config_hash
from negate.data.decode import DecodeError, decode_image, read_file_bytes, sha256_bytes
from negate.data.encode import save_like, write_bytes_atomic
from negate.data.patches import seed_from_key
from negate.data.records import ImageRecord

log = logging.getLogger(__name__)

MIN_REGION = 64


@dataclass(frozen=True)
class AlignedCrop:
    """A reconstruction of ``real[y:y+size, x:x+size]`` stored in ``path``; the real's same region, saved the same
    way, in ``real_crop`` (the content-matched pair for evaluation)."""

    real_path: str
    x: int
    y: int
    size: int
    path: str
    real_crop: str


def choose_region(h: int, w: int, region: int, seed: int) -> tuple[int, int, int] | None:
    """(x, y, size): a square of ``region`` px (smaller images: their short side floored to 16) at an offset that
    is a multiple of 16; None when the image is smaller than ``MIN_REGION``."""
    size = min(region, (min(h, w) // 16) * 16)
    if size < MIN_REGION:
        return None
    rng = np.random.default_rng(seed)
    x = int(rng.integers(0, (w - size) // 16 + 1)) * 16
    y = int(rng.integers(0, (h - size) // 16 + 1)) * 16
    return x, y, size


def _to_image(t: torch.Tensor) -> Image.Image:
    return Image.fromarray((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def aligned_reconstructions(
    records: list[ImageRecord],
    autoencoder: torch.nn.Module,
    cache_dir: str | Path,
    *,
    region: int = 256,
    per_real: int = 1,
    max_pixels: int = 64_000_000,
) -> dict[str, list[AlignedCrop]]:
    """Reconstructions of the real records (label 0), keyed by the real's path. Unreadable or tiny images get none
    (logged). ``autoencoder.reconstruct`` maps (1, 3, H, W) in [0, 1] to the same shape."""
    identity = getattr(autoencoder, "identity", lambda: {"ae": type(autoencoder).__name__})()
    folder = Path(cache_dir) / "aligned" / config_hash({"ae": identity, "region": region})
    out: dict[str, list[AlignedCrop]] = {}
    reals = [r for r in records if r.label == 0]
    made = 0
    for n, record in enumerate(reals):
        try:
            data = read_file_bytes(record.path)
            digest = sha256_bytes(data)
            crops = []
            image = None
            for k in range(per_real):
                existing = sorted(folder.glob(f"{digest}_{k}_*"))
                if existing:
                    path = existing[0]
                    x, y, size = (int(v) for v in path.stem.split("_")[2:5])
                else:
                    image = image if image is not None else np.asarray(decode_image(data, max_pixels))
                    where = choose_region(*image.shape[:2], region, seed_from_key(f"{digest}|aligned{k}"))
                    if where is None:
                        break
                    x, y, size = where
                    patch = torch.from_numpy(image[y:y + size, x:x + size].copy()).permute(2, 0, 1)[None].float() / 255
                    recon = autoencoder.reconstruct(patch)[0]
                    encoded, ext = save_like(_to_image(recon), data)
                    path = folder / f"{digest}_{k}_{x}_{y}_{size}.{ext}"
                    write_bytes_atomic(path, encoded)
                    made += 1
                real_crop = folder / "real" / path.name
                if not real_crop.exists():
                    image = image if image is not None else np.asarray(decode_image(data, max_pixels))
                    encoded, _ = save_like(Image.fromarray(np.ascontiguousarray(image[y:y + size, x:x + size])), data)
                    write_bytes_atomic(real_crop, encoded)
                crops.append(AlignedCrop(record.path, x, y, size, str(path), str(real_crop)))
            if crops:
                out[record.path] = crops
        except DecodeError as err:
            log.warning("no aligned reconstruction for %s: %s", record.path, err)
        if made and (n + 1) % 100 == 0:
            log.info("aligned reconstructions: %d/%d reals", n + 1, len(reals))
    log.info("aligned reconstructions: %d reals with a reconstruction (%d new) in %s", len(out), made, folder)
    return out
