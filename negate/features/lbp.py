"""Uniform local binary pattern histograms of the grey image and of its Laplacian residual.

LBP codes describe micro-texture independently of contrast; generated images tend to have too-regular or too-smooth
micro-texture, most visible in the residual. ``lbp_codes`` reproduces ``skimage.feature.local_binary_pattern(image,
P, R, method='uniform')`` operation for operation (sampling offsets rounded to 5 decimals, bilinear interpolation
with zeros outside the image, ``neighbour - centre >= 0``, uniformity counted over the open chain of P samples), so
on integer-valued images (skimage's recommended input: the grey image is quantised to 8-bit levels first) the codes
are identical. Histograms skip the ``ceil(R)``-pixel border, where the zero padding makes fake edges.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from negate.features.base import FeatureFamily, register_feature, to_grey
from negate.features.laplacian import laplacian_residual

DEFAULT_RADII = ((8, 1.0), (16, 2.0))


def _sample_offsets(p: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    angles = 2 * np.pi * np.arange(p, dtype=np.float64) / p
    return np.round(-r * np.sin(angles), 5), np.round(r * np.cos(angles), 5)


def _axis_weights(n: int, offset: float) -> tuple[int, int, np.ndarray]:
    """skimage's per-pixel ``floor``/``ceil`` and fractional weight along one axis (computed per absolute index,
    exactly as the Cython loop does)."""
    pos = np.arange(n, dtype=np.float64) + offset
    lo = np.floor(pos)
    frac = pos - lo
    lo_shift = int(math.floor(offset))
    hi_shift = int(math.ceil(offset))
    return lo_shift, hi_shift, frac


def _window_is_flat(img: torch.Tensor, radius: int) -> torch.Tensor:
    """``(N, H, W)`` bool: the ``(2*radius+1)^2`` window around the pixel (zeros outside) equals the centre."""
    k = 2 * radius + 1
    h, w = img.shape[-2:]
    padded = F.pad(img.unsqueeze(1), (radius, radius, radius, radius), value=0.0)[:, 0]
    lo_r = hi_r = padded[..., :, :w]
    for i in range(1, k):
        lo_r, hi_r = torch.minimum(lo_r, padded[..., :, i : i + w]), torch.maximum(hi_r, padded[..., :, i : i + w])
    lo, hi = lo_r[..., :h, :], hi_r[..., :h, :]
    for i in range(1, k):
        lo, hi = torch.minimum(lo, lo_r[..., i : i + h, :]), torch.maximum(hi, hi_r[..., i : i + h, :])
    return (lo == img) & (hi == img)


def _skimage_interpolate(tl, tr, bl, br, dr, dc):
    """skimage's ``bilinear_interpolation``, operation for operation."""
    top = (1.0 - dc) * tl + dc * tr
    bottom = (1.0 - dc) * bl + dc * br
    return (1.0 - dr) * top + dr * bottom


def _codes_from_bits(bits, p: int) -> torch.Tensor:
    ones = changes = prev = None
    for bit in bits:
        bit = bit.to(torch.uint8)
        if ones is None:
            ones, changes = bit.clone(), torch.zeros_like(bit)
        else:
            ones += bit
            changes += bit != prev
        prev = bit
    return torch.where(changes <= 2, ones, torch.full_like(ones, p + 1))


def lbp_codes(img: torch.Tensor, p: int, r: float, flat: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform LBP codes ``(N, H, W)`` in ``0..P+1`` (uint8) of ``(N, H, W)`` images, as skimage's 'uniform'.

    Float64 input is interpolated with skimage's exact operation order, so the codes are identical. On integer-valued
    images many samples tie with the centre mathematically (weights 0.70711 and 0.29289 cancel) and skimage's float64
    rounding decides those bits; float32 input is therefore interpolated fast (``torch.lerp``) and every pixel with
    a sample within float32 error of its centre is recomputed the float64 way. Pixels whose whole window equals the
    centre (``flat``, computed if not given; any window at least ``ceil(R)`` wide is valid) tie exactly in any
    precision and are skipped.
    """
    n, h, w = img.shape
    pad = int(math.ceil(r)) + 1
    padded = F.pad(img.unsqueeze(1), (pad, pad, pad, pad), value=0.0)[:, 0]
    exact = img.dtype == torch.float64
    rp, cp = _sample_offsets(p, r)
    geometry = [(*_axis_weights(h, rp[i]), *_axis_weights(w, cp[i])) for i in range(p)]

    def at(src, dy: int, dx: int) -> torch.Tensor:
        return src[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]

    closest = None

    def bits():
        nonlocal closest
        for r0, r1, dr, c0, c1, dc in geometry:
            if not dr.any() and not dc.any():
                yield at(padded, r0, c0) >= img
                continue
            dr_t = torch.from_numpy(dr).to(device=img.device, dtype=img.dtype).view(1, h, 1)
            dc_t = torch.from_numpy(dc).to(device=img.device, dtype=img.dtype).view(1, 1, w)
            corners = (at(padded, r0, c0), at(padded, r0, c1), at(padded, r1, c0), at(padded, r1, c1))
            if exact:
                yield _skimage_interpolate(*corners, dr_t, dc_t) >= img
                continue
            diff = torch.lerp(torch.lerp(corners[0], corners[1], dc_t), torch.lerp(corners[2], corners[3], dc_t), dr_t)
            diff -= img
            yield diff >= 0
            diff.abs_()
            closest = diff if closest is None else torch.minimum(closest, diff, out=closest)

    codes = _codes_from_bits(bits(), p)
    if exact or closest is None:
        return codes
    # float32 error of the interpolation is a few ulp of the largest magnitude involved
    tol = 1e-6 * (1.0 + float(img.abs().max()))
    if flat is None:
        flat = _window_is_flat(img, int(math.ceil(r)))
    unsure = (closest <= tol) & ~flat
    if bool(unsure.any()):
        nb, yy, xx = unsure.nonzero(as_tuple=True)
        padded64, centre64 = padded.double(), img[nb, yy, xx].double()

        def exact_bits():
            for r0, r1, dr, c0, c1, dc in geometry:
                g = [padded64[nb, yy + pad + a, xx + pad + b] for a, b in ((r0, c0), (r0, c1), (r1, c0), (r1, c1))]
                dr_t, dc_t = torch.from_numpy(dr).to(img.device)[yy], torch.from_numpy(dc).to(img.device)[xx]
                yield _skimage_interpolate(*g, dr_t, dc_t) >= centre64

        codes[nb, yy, xx] = _codes_from_bits(exact_bits(), p)
    return codes


def code_histogram(codes: torch.Tensor, n_codes: int, border: int) -> torch.Tensor:
    """Share of each code ``0..n_codes-1`` per image, over the interior (``border`` pixels dropped on each side)."""
    n = codes.shape[0]
    if border > 0 and min(codes.shape[-2:]) > 2 * border:
        codes = codes[:, border:-border, border:-border]
    flat = codes.reshape(n, -1).long() + torch.arange(n, device=codes.device).view(-1, 1) * n_codes
    counts = torch.bincount(flat.reshape(-1), minlength=n * n_codes).view(n, n_codes).float()
    return counts / counts.sum(-1, keepdim=True).clamp_min(1.0)


@register_feature("lbp")
class LBPFeatures(FeatureFamily):
    """Uniform-LBP code shares for each (P, R) on the 8-bit grey image and on its Laplacian residual."""

    version = "1"
    pool = ("mean",)

    def __init__(self, radii: tuple | list = DEFAULT_RADII) -> None:
        super().__init__()
        radii = [(int(p), float(r)) for p, r in radii]
        if not radii or any(p < 2 or r <= 0 for p, r in radii):
            raise ValueError(f"radii must be (P >= 2, R > 0) pairs, got {radii}")
        self.radii = radii
        self.hparams = {"radii": [[p, r] for p, r in radii]}

    @staticmethod
    def _tag(p: int, r: float) -> str:
        return f"p{p}r{r:g}".replace(".", "_")

    def feature_names(self) -> list[str]:
        return [
            f"{self.name}.{src}_{self._tag(p, r)}_{c:02d}"
            for src in ("grey", "resid")
            for p, r in self.radii
            for c in range(p + 2)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        grey = torch.round(to_grey(x) * 255.0)
        widest = max(int(math.ceil(r)) for _, r in self.radii)
        out = []
        for src in (grey[:, 0], laplacian_residual(grey)[:, 0]):
            flat = _window_is_flat(src, widest)  # shared by all radii: a wider flat window is flat for smaller R
            out += [code_histogram(lbp_codes(src, p, r, flat), p + 2, int(math.ceil(r))) for p, r in self.radii]
        return torch.cat(out, dim=1)
