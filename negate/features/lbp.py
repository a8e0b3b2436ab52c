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

from negate.features.base import FeatureFamily, constant_tensors, pad_eager, register_feature, to_grey
from negate.features.laplacian import laplacian_residual
from negate.features.stats import value_counts

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


@constant_tensors
def _geometry(p: int, r: float, h: int, w: int, device: str) -> tuple:
    """Per sample ``(r0, r1, c0, c1, weights)``; ``weights`` is ``None`` for a sample on the pixel grid, else
    float64 ``(dr, 1 - dr)`` as ``(H, 1)`` and ``(dc, 1 - dc)`` as ``(1, W)`` tensors (skimage's per-index values)."""
    rp, cp = _sample_offsets(p, r)
    shared: dict[tuple, torch.Tensor] = {}

    def as_tensor(v: np.ndarray, shape: tuple) -> torch.Tensor:
        # equal weights share one tensor, so the compiled kernel computes a horizontal lerp shared by two samples
        # (angles +-theta read the same row with the same column weights) once
        key = (v.tobytes(), shape)
        if key not in shared:
            shared[key] = torch.from_numpy(v.copy()).to(device).view(shape)
        return shared[key]

    out = []
    for i in range(p):
        r0, r1, dr = _axis_weights(h, rp[i])
        c0, c1, dc = _axis_weights(w, cp[i])
        if not dr.any() and not dc.any():
            out.append((r0, r1, c0, c1, None))
            continue
        rows = [as_tensor(v, (-1, 1)) for v in (dr, 1.0 - dr)]
        cols = [as_tensor(v, (1, -1)) for v in (dc, 1.0 - dc)]
        out.append((r0, r1, c0, c1, (*rows, *cols)))
    return tuple(out)


def zero_pad(img: torch.Tensor, pad: int) -> torch.Tensor:
    """``(N, H, W)`` -> ``(N, H + 2 pad, W + 2 pad)``, zeros outside (skimage's ``cval=0``)."""
    return pad_eager(img.unsqueeze(1), (pad, pad, pad, pad))[:, 0]


def _exact_codes(padded: torch.Tensor, pad: int, p: int, r: float) -> torch.Tensor:
    """Codes of the image inside ``padded`` (``zero_pad`` with ``pad >= ceil(r) + 1``; integer-valued float32 is
    exact, so the float64 conversion happens in the loads): float64 interpolation in skimage's operation order,
    written as one elementwise expression per sample so that ``torch.compile`` fuses all P samples into a single
    pass over the image (float64 lanes throughout: the bit counts are float64 too, which vectorises better than
    mixing in integer lanes)."""
    h, w = padded.shape[1] - 2 * pad, padded.shape[2] - 2 * pad
    padded = padded.double()
    centre = padded[:, pad : pad + h, pad : pad + w]

    def at(dy: int, dx: int) -> torch.Tensor:
        return padded[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]

    ones = changes = prev = None
    for r0, r1, c0, c1, weights in _geometry(p, r, h, w, padded.device):
        if weights is None:
            sample = at(r0, c0)
        else:
            dr, dr1, dc, dc1 = weights
            top = dc1 * at(r0, c0) + dc * at(r0, c1)
            bottom = dc1 * at(r1, c0) + dc * at(r1, c1)
            sample = dr1 * top + dr * bottom
        bit = (sample >= centre).double()
        if ones is None:
            ones, changes = bit, torch.zeros_like(bit)
        else:
            ones = ones + bit
            changes = changes + (bit - prev).abs()
        prev = bit
    return torch.where(changes > 2, float(p + 1), ones).to(torch.uint8)


def lbp_codes(img: torch.Tensor, p: int, r: float) -> torch.Tensor:
    """Uniform LBP codes ``(N, H, W)`` in ``0..P+1`` (uint8) of ``(N, H, W)`` images, as skimage's 'uniform'.

    Float64 input, and any input under ``torch.compile``, is interpolated in float64 with skimage's exact operation
    order (``_exact_codes``), so the codes are identical. On integer-valued images samples often tie with the centre
    mathematically (weights 0.70711 and 0.29289 cancel) and skimage's float64 rounding decides those bits. Eager
    float32 input is therefore interpolated fast (``torch.lerp``) and only the pixels with a sample within float32
    error of the centre are recomputed the float64 way; samples whose 2x2 cell is constant are exact in any
    precision and never need it. Identical to skimage for integer-valued float32 images.
    """
    if img.dtype == torch.float64 or torch.compiler.is_compiling():
        pad = int(math.ceil(r)) + 1
        return _exact_codes(zero_pad(img, pad), pad, p, r)
    n, h, w = img.shape
    pad = int(math.ceil(r)) + 1
    padded = pad_eager(img.unsqueeze(1), (pad, pad, pad, pad))[:, 0]
    geometry = _geometry(p, r, h, w, img.device)

    def at(src, dy: int, dx: int) -> torch.Tensor:
        return src[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]

    # huge where the 2x2 cell with top-left (y, x) of ``padded`` is constant (its interpolation is exact)
    cell_hi = torch.maximum(torch.maximum(padded[:, :-1, :-1], padded[:, :-1, 1:]), torch.maximum(padded[:, 1:, :-1], padded[:, 1:, 1:]))
    cell_lo = torch.minimum(torch.minimum(padded[:, :-1, :-1], padded[:, :-1, 1:]), torch.minimum(padded[:, 1:, :-1], padded[:, 1:, 1:]))
    exact_cell = (cell_hi == cell_lo).to(img.dtype).mul_(1e30)
    closest = torch.full_like(img, torch.inf)

    def bits():
        for r0, r1, c0, c1, weights in geometry:
            if weights is None:
                yield at(padded, r0, c0) >= img
                continue
            corners = (at(padded, r0, c0), at(padded, r0, c1), at(padded, r1, c0), at(padded, r1, c1))
            # one weight per axis (the per-pixel float64 weights differ by ~1e-16; the unsure check covers it)
            wr, wc = float(weights[0][0, 0]), float(weights[2][0, 0])
            diff = torch.lerp(torch.lerp(corners[0], corners[1], wc), torch.lerp(corners[2], corners[3], wc), wr)
            diff -= img
            yield diff >= 0
            diff.abs_()
            diff += at(exact_cell, r0, c0)
            torch.minimum(closest, diff, out=closest)

    codes = _codes_from_bits(bits(), p)
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
            for r0, r1, c0, c1, weights in geometry:
                g = [window[:, k + a, k + b] for a, b in ((r0, c0), (r0, c1), (r1, c0), (r1, c1))]
                if weights is None:
                    yield g[0] >= centre64
                    continue
                dr, dr1, dc, dc1 = weights
                dr, dr1, dc, dc1 = dr[yy, 0], dr1[yy, 0], dc[0, xx], dc1[0, xx]
                yield dr1 * (dc1 * g[0] + dc * g[1]) + dr * (dc1 * g[2] + dc * g[3]) >= centre64

        codes[nb, yy, xx] = _codes_from_bits(exact_bits(), p)
    return codes


def code_histogram(codes: torch.Tensor, n_codes: int, border: int) -> torch.Tensor:
    """Share of each code ``0..n_codes-1`` per image, over the interior (``border`` pixels dropped on each side)."""
    if border > 0 and min(codes.shape[-2:]) > 2 * border:
        codes = codes[:, border:-border, border:-border]
    return value_counts(codes, n_codes, (-2, -1)).float() / max(codes.shape[-2] * codes.shape[-1], 1)


@register_feature("lbp")
class LBPFeatures(FeatureFamily):
    """Uniform-LBP code shares for each (P, R) on the 8-bit grey image and on its Laplacian residual."""

    version = "2"  # 2: written for torch.compile (fused statistics); float round-off differs
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
        out = []
        for src in (grey[:, 0], laplacian_residual(grey)[:, 0]):
            if torch.compiler.is_compiling():  # one float64 padding shared by every radius
                pad = max(int(math.ceil(r)) + 1 for _, r in self.radii)
                padded = zero_pad(src, pad)
                codes = [_exact_codes(padded, pad, p, r) for p, r in self.radii]
            else:
                codes = [lbp_codes(src, p, r) for p, r in self.radii]
            out += [code_histogram(c, p + 2, int(math.ceil(r))) for c, (p, r) in zip(codes, self.radii)]
        return torch.cat(out, dim=1)
