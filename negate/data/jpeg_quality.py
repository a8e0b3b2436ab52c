"""The quality a JPEG was last saved at, estimated from its luminance quantisation table (header only, no decode).

Encoders built on libjpeg (Pillow, most cameras' and web services' pipelines) scale the standard table of the JPEG
specification (Annex K) by a quality factor; matching the file's table against those 100 scaled tables gives the
quality back exactly for such files and the nearest equivalent for others. The tables' sum is matched, which does not
depend on the order (zigzag or natural) the table is stored in.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

# Annex K.1 luminance quantisation table
STANDARD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def scaled_luma_table(quality: int) -> np.ndarray:
    """libjpeg's luminance table at ``quality`` (1-100, baseline: entries clipped to 1..255)."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((STANDARD_LUMA * scale + 50) // 100, 1, 255)


_SUMS = np.array([scaled_luma_table(q).sum() for q in range(1, 101)])


def estimate_jpeg_quality(path: str | os.PathLike) -> int | None:
    """The libjpeg quality (1-100) whose luminance table is closest to the file's, or None when the file is not a JPEG
    or cannot be read."""
    try:
        with Image.open(path) as im:
            tables = getattr(im, "quantization", None) if im.format in ("JPEG", "MPO") else None
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if not tables or 0 not in tables:
        return None
    total = int(np.sum(tables[0]))
    return int(np.argmin(np.abs(_SUMS - total))) + 1
