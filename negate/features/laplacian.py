"""Denoiser residuals: what is left after a Laplacian and a 3x3 median filter, per colour channel.

Camera pipelines (demosaicing, sensor noise, JPEG) and generator decoders leave different high-frequency noise.
The residual of a linear high-pass (Laplacian) and of a non-linear denoiser (median) are summarised by their moments,
a fixed-bin histogram of ``|r|`` (in 8-bit grey levels) and the correlation of the residual between colour channels
(demosaicing correlates them; many generators do not).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from negate.features.base import FeatureFamily, register_feature

# |r| * 255 bin edges (8-bit grey levels): {0}, {1}, {2,3}, {4..7}, {8..15}, {16..31}, {32..63}, {64+}
DEFAULT_EDGES = (0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 63.5)
CHANNELS = ("r", "g", "b")


def median3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median of every channel of ``(N, C, H, W)``, mirror borders (``scipy.ndimage`` ``mode='mirror'``).

    Exact median of 9 without sorting: sort each vertical triple once (shared by three windows), then the median is
    ``med3(max of the column minima, med3 of the column medians, min of the column maxima)``. Intermediates are
    updated in place: this is memory-bound, and fresh full-size buffers cost more than the comparisons.
    """
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect") if min(h, w) > 1 else F.pad(x, (1, 1, 1, 1), mode="replicate")
    top, mid, bot = p[..., :-2, :], p[..., 1:-1, :], p[..., 2:, :]
    lo = torch.minimum(top, mid)
    me = torch.maximum(top, mid)
    hi = torch.maximum(me, bot)
    torch.minimum(me, bot, out=me)
    torch.maximum(lo, me, out=me)  # column median
    torch.minimum(lo, bot, out=lo)  # column minimum

    def left_mid_right(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return t[..., :-2], t[..., 1:-1], t[..., 2:]

    a, b, c = left_mid_right(lo)
    lo_max = torch.maximum(a, b)
    torch.maximum(lo_max, c, out=lo_max)
    a, b, c = left_mid_right(hi)
    hi_min = torch.minimum(a, b)
    torch.minimum(hi_min, c, out=hi_min)
    a, b, c = left_mid_right(me)
    me_med = torch.minimum(a, b)
    upper = torch.maximum(a, b)
    torch.minimum(upper, c, out=upper)
    torch.maximum(me_med, upper, out=me_med)
    # med3(lo_max, me_med, hi_min) = max(min(a, b), min(max(a, b), c))
    low = torch.minimum(lo_max, me_med)
    torch.maximum(lo_max, me_med, out=lo_max)
    torch.minimum(lo_max, hi_min, out=lo_max)
    return torch.maximum(low, lo_max, out=low)


def median_residual(x: torch.Tensor) -> torch.Tensor:
    """``x - median3x3(x)``: the part a simple non-linear denoiser removes."""
    med = median3x3(x)
    return torch.sub(x, med, out=med)


def box3x3_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over each 3x3 neighbourhood of ``(N, C, H, W)``, mirror borders (replicate for 1-pixel sides)."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect" if min(h, w) > 1 else "replicate")
    rows = p[..., :-2, :] + p[..., 1:-1, :]
    rows += p[..., 2:, :]
    out = rows[..., :-2] + rows[..., 1:-1]
    out += rows[..., 2:]
    return out


def laplacian_residual(x: torch.Tensor) -> torch.Tensor:
    """8-neighbour Laplacian (kernel of ones, centre -8), unnormalised, mirror borders: what
    ``kornia.filters.laplacian(x, 3, normalized=False)`` returns, computed as ``box3x3_sum(x) - 9 x`` because
    kornia's CPU path for large inputs is a dense convolution, several times slower."""
    return torch.sub(box3x3_sum(x), x, alpha=9.0)


def moments(v: torch.Tensor, eps: float = 1e-12) -> dict[str, torch.Tensor]:
    """``safe_moments`` over the last dim with fewer full-size temporaries (the hot spot of these families)."""
    mean = v.mean(-1)
    c = v - mean.unsqueeze(-1)
    c2 = c * c
    var = c2.mean(-1)
    m3 = (c2 * c).mean(-1)
    c2.square_()
    m4 = c2.mean(-1)
    flat = var <= eps
    safe = var.clamp_min(eps)
    skew = torch.where(flat, torch.zeros_like(var), m3 / safe.pow(1.5))
    kurt = torch.where(flat, torch.zeros_like(var), m4 / safe.square() - 3.0)
    return {"mean": mean, "std": var.sqrt(), "skew": skew, "kurt": kurt, "centred": c}


def channel_correlations(centred: torch.Tensor) -> torch.Tensor:
    """``(N, 3, L)`` mean-free rows -> ``(N, 3)`` Pearson correlations rg, rb, gb (0 for a flat channel)."""
    cov = torch.bmm(centred, centred.transpose(1, 2))
    var = torch.diagonal(cov, dim1=1, dim2=2).clamp_min(1e-20)
    pairs = [(0, 1), (0, 2), (1, 2)]
    return torch.stack([cov[:, i, j] / (var[:, i] * var[:, j]).sqrt() for i, j in pairs], dim=-1).clamp(-1.0, 1.0)


def level_histogram(levels: torch.Tensor, edges: list[float]) -> torch.Tensor:
    """Fractions of ``levels`` (``(R, L)``, non-negative, in grey levels) in ``[0,e0), [e0,e1), ..., [e_last, inf)``
    for half-integer ``edges`` (k + 0.5): rounding to the nearest level first gives the same bins, and one
    ``bincount`` over integer levels replaces a comparison pass per edge."""
    rows, length = levels.shape
    cap = int(math.ceil(edges[-1]))
    idx = levels.round().clamp_(max=cap).to(torch.int64)
    idx += torch.arange(rows, device=levels.device).view(-1, 1) * (cap + 1)
    counts = torch.bincount(idx.view(-1), minlength=rows * (cap + 1)).view(rows, cap + 1).float()
    fold = torch.bucketize(torch.arange(cap + 1, dtype=torch.float32), torch.tensor(edges), right=True)
    return (counts @ F.one_hot(fold, len(edges) + 1).float().to(levels.device)) / length


def residual_stats(r: torch.Tensor, edges: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel stats ``(N, C, 4 + B)`` [mean|r|, std, skew, kurt, hist...] and channel correlations ``(N, 3)``.

    ``r`` is in [0, 1] units; ``edges`` are in 8-bit grey levels."""
    n, c = r.shape[:2]
    flat = r.reshape(n, c, -1)
    m = moments(flat)
    a = flat.abs()
    mean_abs = a.mean(-1)
    hist = level_histogram(a.mul_(255.0).view(n * c, -1), edges).view(n, c, -1)
    per_channel = torch.cat([torch.stack([mean_abs, m["std"], m["skew"], m["kurt"]], dim=-1), hist], dim=-1)
    return per_channel, channel_correlations(m["centred"])


@register_feature("laplacian")
class LaplacianResidual(FeatureFamily):
    """Laplacian and median-denoiser residual statistics per colour channel, plus cross-channel correlation."""

    version = "1"
    pool = ("mean", "max")

    def __init__(self, edges: tuple[float, ...] | list[float] = DEFAULT_EDGES) -> None:
        super().__init__()
        edges = [float(e) for e in edges]
        if edges != sorted(edges) or not edges or any(e < 0 or (e - 0.5) % 1 for e in edges):
            raise ValueError(f"histogram edges must be increasing half-integers (k + 0.5 grey levels), got {edges}")
        self.edges = edges
        self.hparams = {"edges": list(edges)}

    def feature_names(self) -> list[str]:
        n_bins = len(self.hparams["edges"]) + 1
        stats = ["mean_abs", "std", "skew", "kurt"] + [f"hist_{i:02d}" for i in range(n_bins)]
        names = []
        for res in ("lap", "med"):
            names += [f"{self.name}.{res}_{ch}_{s}" for ch in CHANNELS for s in stats]
            names += [f"{self.name}.{res}_corr_{a}{b}" for a, b in (("r", "g"), ("r", "b"), ("g", "b"))]
        return names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        n = x.shape[0]
        out = []
        for r in (laplacian_residual(x), median_residual(x)):
            per_channel, corr = residual_stats(r, self.edges)
            out += [per_channel.reshape(n, -1), corr]
        return torch.nan_to_num(torch.cat(out, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
