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


def lbp_codes(img: torch.Tensor, p: int, r: float) -> torch.Tensor:
    """Uniform LBP codes ``(N, H, W)`` in ``0..P+1`` (uint8) of ``(N, H, W)`` images, as skimage's 'uniform'.

    skimage interpolates in float64, and on integer-valued images many samples tie with the centre up to the last
    bit (e.g. weights 0.70711 and 0.29289 cancelling), where the rounding decides the bit. Float32 input is sampled
    in float32 and the few samples within float32 error of the centre are recomputed in float64 with skimage's exact
    operation order, so the codes stay identical to skimage's at float32 speed.
    """
    n, h, w = img.shape
    pad = int(math.ceil(r)) + 1
    padded = F.pad(img.unsqueeze(1), (pad, pad, pad, pad), value=0.0)[:, 0]
    one = torch.ones((), dtype=img.dtype, device=img.device)
    exact = img.dtype == torch.float64
    if not exact:
        # float32 error of the 6-operation interpolation is a few ulp of the largest magnitude involved
        tol = 1e-6 * (1.0 + float(img.abs().max())) if img.numel() else 0.0
        padded64 = None
        # pixels whose whole neighbourhood equals the centre tie exactly in any precision: no recomputation
        k = 2 * pad - 1
        win = padded.unsqueeze(1)[:, :, 1:-1, 1:-1]
        flat = (F.max_pool2d(win, k, stride=1)[:, 0] == img) & (-F.max_pool2d(-win, k, stride=1)[:, 0] == img)

    def shifted(src: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        return src[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]

    def interpolate(src, r0, r1, c0, c1, dr, dc):
        """skimage's bilinear_interpolation; ``dr``/``dc`` broadcast against ``src``-shaped samples or gathers."""
        tl, tr, bl, br = (src(r0, c0), src(r0, c1), src(r1, c0), src(r1, c1))
        top = (1.0 - dc) * tl + dc * tr
        bottom = (1.0 - dc) * bl + dc * br
        return (1.0 - dr) * top + dr * bottom

    rp, cp = _sample_offsets(p, r)
    ones = torch.zeros(n, h, w, dtype=torch.uint8, device=img.device)
    changes = torch.zeros_like(ones)
    prev = None
    for i in range(p):
        r0, r1, dr = _axis_weights(h, rp[i])
        c0, c1, dc = _axis_weights(w, cp[i])
        if not dr.any() and not dc.any():
            bit = shifted(padded, r0, c0) >= img
        else:
            dr_t = torch.from_numpy(dr).to(device=img.device, dtype=img.dtype).view(1, h, 1)
            dc_t = torch.from_numpy(dc).to(device=img.device, dtype=img.dtype).view(1, 1, w)
            diff = interpolate(lambda a, b: shifted(padded, a, b), r0, r1, c0, c1, dr_t, dc_t) - img
            bit = diff >= 0
            if not exact:
                unsure = (diff.abs() <= tol) & ~flat
                if bool(unsure.any()):
                    if padded64 is None:
                        padded64 = padded.double()
                    nb, yy, xx = unsure.nonzero(as_tuple=True)
                    tex = interpolate(
                        lambda a, b: padded64[nb, yy + pad + a, xx + pad + b],
                        r0, r1, c0, c1,
                        torch.from_numpy(dr).to(img.device)[yy],
                        torch.from_numpy(dc).to(img.device)[xx],
                    )
                    bit[nb, yy, xx] = tex - img[nb, yy, xx].double() >= 0
        bit = bit.to(torch.uint8)
        ones += bit
        if prev is not None:
            changes += bit != prev
        prev = bit
    return torch.where(changes <= 2, ones, torch.full_like(ones, p + 1))


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
        sources = (grey[:, 0], laplacian_residual(grey)[:, 0])
        out = [
            code_histogram(lbp_codes(src, p, r), p + 2, int(math.ceil(r)))
            for src in sources
            for p, r in self.radii
        ]
        return torch.cat(out, dim=1)
