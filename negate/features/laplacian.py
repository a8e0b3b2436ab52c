"""Denoiser residuals: what is left after a Laplacian and a 3x3 median filter, per colour channel.

Camera pipelines (demosaicing, sensor noise, JPEG) and generator decoders leave different high-frequency noise.
The residual of a linear high-pass (Laplacian) and of a non-linear denoiser (median) are summarised by their moments,
a fixed-bin histogram of ``|r|`` (in 8-bit grey levels) and the correlation of the residual between colour channels
(demosaicing correlates them; many generators do not).
"""

from __future__ import annotations


import torch

from negate.features.base import FeatureFamily, pad_eager, register_feature
from negate.features.stats import channel_correlations, level_histogram, moments

# |r| * 255 bin edges (8-bit grey levels): {0}, {1}, {2,3}, {4..7}, {8..15}, {16..31}, {32..63}, {64+}
DEFAULT_EDGES = (0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 63.5)
CHANNELS = ("r", "g", "b")


def median3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median of every channel of ``(N, C, H, W)``, mirror borders (``scipy.ndimage`` ``mode='mirror'``).

    Exact median of 9 without sorting: sort each vertical triple (shared by three windows), then the median is
    ``med3(max of the column minima, med3 of the column medians, min of the column maxima)``. Purely elementwise
    on shifted views, so ``torch.compile`` turns it into one pass.
    """
    h, w = x.shape[-2:]
    p = pad_eager(x, (1, 1, 1, 1), "reflect" if min(h, w) > 1 else "replicate")
    top, mid, bot = p[..., :-2, :], p[..., 1:-1, :], p[..., 2:, :]
    lo, hi = torch.minimum(top, mid), torch.maximum(top, mid)
    col_med = torch.maximum(lo, torch.minimum(hi, bot))
    col_min, col_max = torch.minimum(lo, bot), torch.maximum(hi, bot)

    def left_mid_right(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return t[..., :-2], t[..., 1:-1], t[..., 2:]

    a, b, c = left_mid_right(col_min)
    lo_max = torch.maximum(torch.maximum(a, b), c)
    a, b, c = left_mid_right(col_max)
    hi_min = torch.minimum(torch.minimum(a, b), c)
    a, b, c = left_mid_right(col_med)
    me_med = med3(a, b, c)
    return med3(lo_max, me_med, hi_min)


def med3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Elementwise median of three: ``max(min(a, b), min(max(a, b), c))``."""
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def median_residual(x: torch.Tensor) -> torch.Tensor:
    """``x - median3x3(x)``: the part a simple non-linear denoiser removes."""
    return x - median3x3(x)


def box3x3_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over each 3x3 neighbourhood of ``(N, C, H, W)``, mirror borders (replicate for 1-pixel sides)."""
    h, w = x.shape[-2:]
    p = pad_eager(x, (1, 1, 1, 1), "reflect" if min(h, w) > 1 else "replicate")
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def laplacian_residual(x: torch.Tensor) -> torch.Tensor:
    """8-neighbour Laplacian (kernel of ones, centre -8), unnormalised, mirror borders: what
    ``kornia.filters.laplacian(x, 3, normalized=False)`` returns, computed as ``box3x3_sum(x) - 9 x`` because
    kornia's CPU path for large inputs is a dense convolution, several times slower."""
    return box3x3_sum(x) - 9.0 * x


def residual_stats(r: torch.Tensor, edges: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C, H, W)`` residual in [0, 1] units -> per-channel stats ``(N, C, 4 + B)`` [mean|r|, std, skew, kurt,
    hist...] and channel correlations ``(N, 3)``; ``edges`` are in 8-bit grey levels."""
    spatial = (-2, -1)
    m = moments(r, spatial)
    a = r.abs()
    hist = level_histogram(a, [e / 255.0 for e in edges], spatial)
    per_channel = torch.cat([torch.stack([a.mean(spatial), m["std"], m["skew"], m["kurt"]], dim=-1), hist], dim=-1)
    return per_channel, channel_correlations(m["centred"], spatial)


@register_feature("laplacian")
class LaplacianResidual(FeatureFamily):
    """Laplacian and median-denoiser residual statistics per colour channel, plus cross-channel correlation."""

    version = "2"  # 2: written for torch.compile (fused statistics); float round-off differs
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
