"""Cut an image into the fixed-size patches that feature families see.

Forensic traces live in the highest frequencies, so the default keeps native resolution: patches are cut, never
resized. Patch origins are snapped to multiples of 8 so the JPEG 8x8 block grid stays aligned inside every patch
(the DCT family depends on it). Images smaller than a patch are reflect-padded (edge-padded where reflection is
impossible, e.g. a 1-pixel-wide image). ``policy="resize"`` is the documented alternative: the shorter side is
resized to the patch size and the centre cut, which erases up-sampling traces and exists for comparison only.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

SELECTIONS = ("center", "grid", "random")
POLICIES = ("native", "resize")


def _pad_to(img: torch.Tensor, size: int) -> torch.Tensor:
    _, h, w = img.shape
    pad_h, pad_w = max(0, size - h), max(0, size - w)
    if pad_h == 0 and pad_w == 0:
        return img
    dtype = img.dtype
    batch = img.unsqueeze(0).float()  # F.pad's reflect mode needs floats; values are copied exactly
    # reflect needs pad < dim; repeat reflection until big enough, else fall back to replicate
    while (batch.shape[-2] < size or batch.shape[-1] < size) and min(batch.shape[-2:]) > 1:
        h, w = batch.shape[-2:]
        ph, pw = min(max(0, size - h), h - 1), min(max(0, size - w), w - 1)
        batch = F.pad(batch, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")
    h, w = batch.shape[-2:]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        batch = F.pad(batch, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
    return batch.squeeze(0).to(dtype)


def _snap(v: int, limit: int) -> int:
    return max(0, min(limit, (v // 8) * 8))


def patch_origins(h: int, w: int, size: int, count: int, selection: str, seed: int) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` patches of ``size`` inside an ``h x w`` image (already padded to >= size)."""
    if selection not in SELECTIONS:
        raise ValueError(f"patch selection must be one of {SELECTIONS}, got {selection!r}")
    max_y, max_x = h - size, w - size
    if selection == "center" or count == 1:
        return [(_snap(max_y // 2, max_y), _snap(max_x // 2, max_x))]
    if selection == "grid":
        rows = max(1, int(math.floor(math.sqrt(count))))
        cols = int(math.ceil(count / rows))
        ys = [round(max_y * i / max(1, rows - 1)) if rows > 1 else max_y // 2 for i in range(rows)]
        xs = [round(max_x * j / max(1, cols - 1)) if cols > 1 else max_x // 2 for j in range(cols)]
        return [(_snap(y, max_y), _snap(x, max_x)) for y in ys for x in xs][:count]
    gen = torch.Generator().manual_seed(seed)
    ys = torch.randint(0, max_y + 1, (count,), generator=gen).tolist()
    xs = torch.randint(0, max_x + 1, (count,), generator=gen).tolist()
    return [(_snap(y, max_y), _snap(x, max_x)) for y, x in zip(ys, xs)]


def extract_patches(
    img: torch.Tensor,
    size: int = 256,
    count: int = 4,
    selection: str = "grid",
    policy: str = "native",
    seed: int = 0,
) -> torch.Tensor:
    """``(3, H, W)`` image (uint8 or float in [0, 1]) -> ``(P, 3, size, size)`` patches of the same dtype.

    ``P = count`` (1 for ``center``)."""
    if policy not in POLICIES:
        raise ValueError(f"patch policy must be one of {POLICIES}, got {policy!r}")
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(img.shape)}")
    if policy == "resize":
        _, h, w = img.shape
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        dtype = img.dtype
        scaled = img.unsqueeze(0).float()
        scaled = F.interpolate(scaled, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)[0]
        y, x = (new_h - size) // 2, (new_w - size) // 2
        patch = scaled[:, y : y + size, x : x + size].unsqueeze(0)
        if dtype == torch.uint8:
            return patch.round_().clamp_(0, 255).to(torch.uint8)
        return patch.clamp_(0, 1).to(dtype)
    img = _pad_to(img, size)
    _, h, w = img.shape
    origins = patch_origins(h, w, size, count, selection, seed)
    return torch.stack([img[:, y : y + size, x : x + size] for y, x in origins])


def seed_from_key(key: str) -> int:
    """A stable per-image seed from its cache key (sha256 hex), so random selections are reproducible."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
