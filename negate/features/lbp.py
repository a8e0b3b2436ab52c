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
    # non-uniform patterns get P + 1; ``ones <= P`` so a maximum does it (much faster than where on uint8)
    return torch.maximum(ones, (changes > 2).to(torch.uint8).mul_(p + 1))


def lbp_codes(img: torch.Tensor, p: int, r: float) -> torch.Tensor:
    """Uniform LBP codes ``(N, H, W)`` in ``0..P+1`` (uint8) of ``(N, H, W)`` images, as skimage's 'uniform'.

    Float64 input is interpolated with skimage's exact operation order, so the codes are identical. On integer-valued
    images samples often tie with the centre mathematically (weights 0.70711 and 0.29289 cancel) and skimage's
    float64 rounding decides those bits. Float32 input is therefore interpolated fast (``torch.lerp``) and only the
    pixels with a sample within float32 error of the centre are recomputed the float64 way; samples whose 2x2 cell is
    constant are exact in any precision and never need it. Identical to skimage for integer-valued float32 images.
    """
    n, h, w = img.shape
    pad = int(math.ceil(r)) + 1
    padded = F.pad(img.unsqueeze(1), (pad, pad, pad, pad), value=0.0)[:, 0]
    exact = img.dtype == torch.float64
    rp, cp = _sample_offsets(p, r)
    geometry = [(*_axis_weights(h, rp[i]), *_axis_weights(w, cp[i])) for i in range(p)]

    def at(src, dy: int, dx: int) -> torch.Tensor:
        return src[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]

    if not exact:
        # huge where the 2x2 cell with top-left (y, x) of ``padded`` is constant (its interpolation is exact)
        cell_hi = torch.maximum(torch.maximum(padded[:, :-1, :-1], padded[:, :-1, 1:]), torch.maximum(padded[:, 1:, :-1], padded[:, 1:, 1:]))
        cell_lo = torch.minimum(torch.minimum(padded[:, :-1, :-1], padded[:, :-1, 1:]), torch.minimum(padded[:, 1:, :-1], padded[:, 1:, 1:]))
        exact_cell = (cell_hi == cell_lo).to(img.dtype).mul_(1e30)
        closest = torch.full_like(img, torch.inf)

    def bits():
        for r0, r1, dr, c0, c1, dc in geometry:
            if not dr.any() and not dc.any():
                yield at(padded, r0, c0) >= img
                continue
            corners = (at(padded, r0, c0), at(padded, r0, c1), at(padded, r1, c0), at(padded, r1, c1))
            if exact:
                dr_t = torch.from_numpy(dr).to(device=img.device, dtype=img.dtype).view(1, h, 1)
                dc_t = torch.from_numpy(dc).to(device=img.device, dtype=img.dtype).view(1, 1, w)
                yield _skimage_interpolate(*corners, dr_t, dc_t) >= img
                continue
            # one weight per axis (the per-pixel float64 weights differ by ~1e-16; the unsure check covers it)
            wr, wc = float(dr[0]), float(dc[0])
            diff = torch.lerp(torch.lerp(corners[0], corners[1], wc), torch.lerp(corners[2], corners[3], wc), wr)
            diff -= img
            yield diff >= 0
            diff.abs_()
            diff += at(exact_cell, r0, c0)
            torch.minimum(closest, diff, out=closest)

    codes = _codes_from_bits(bits(), p)
    if exact:
        return codes
    # float32 error of three lerps and a subtraction stays below 1e-6 of the largest magnitude involved
    unsure = closest <= 2e-6 * (1.0 + float(img.abs().max()))
    if bool(unsure.any()):
        nb, yy, xx = unsure.nonzero(as_tuple=True)
        # gather each unsure pixel's (2k+1)^2 window once (index_select on the flat buffer is the fast gather)
        k = int(math.ceil(r))
        row_len = w + 2 * pad
        base = (nb * (h + 2 * pad) + yy + pad) * row_len + xx + pad
        offsets = (torch.arange(-k, k + 1, device=img.device).view(-1, 1) * row_len
                   + torch.arange(-k, k + 1, device=img.device).view(1, -1)).view(1, -1)
        window = padded.reshape(-1).index_select(0, (base.view(-1, 1) + offsets).view(-1))
        window = window.view(-1, 2 * k + 1, 2 * k + 1).double()
        centre64 = window[:, k, k]

        def exact_bits():
            for r0, r1, dr, c0, c1, dc in geometry:
                g = [window[:, k + a, k + b] for a, b in ((r0, c0), (r0, c1), (r1, c0), (r1, c1))]
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
        if not radii or any(not 2 <= p <= 64 or r <= 0 for p, r in radii):
            raise ValueError(f"radii must be (2 <= P <= 64, R > 0) pairs, got {radii}")
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
        out = [
            code_histogram(lbp_codes(src, p, r), p + 2, int(math.ceil(r)))
            for src in (grey[:, 0], laplacian_residual(grey)[:, 0])
            for p, r in self.radii
        ]
        return torch.cat(out, dim=1)
