"""8x8 block-DCT statistics of the luma, on the JPEG block grid.

Camera photos are almost always JPEG-compressed: their block-DCT coefficients cluster at multiples of the
quantisation steps (many exact zeros at high frequencies) and their AC magnitudes follow Benford's first-digit law
closely; generated images saved losslessly, or re-encoded once, differ. Patches are cut with origins on multiples
of 8 (``negate.data.patches``) so the blocks here are the encoder's blocks.

``block_dct8`` is the orthonormal 2-D DCT-II of every block, equal to ``scipy.fft.dctn(block, norm='ortho')``.
"""

from __future__ import annotations

import math

import torch

from negate.features.base import FeatureFamily, register_feature, to_grey
from negate.features.stats import value_counts

# |c| bin edges (in the units of JPEG's level-shifted 8-bit luma)
DEFAULT_EDGES = (0.5, 1.5, 2.5, 4.5, 8.5, 16.5, 32.5)
SNAP = 1024.0
BENFORD = torch.tensor([math.log10(1.0 + 1.0 / d) for d in range(1, 10)])


def dct_matrix(n: int = 8, dtype=torch.float32, device=None) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D`` (``D @ v`` == ``scipy.fft.dct(v, norm='ortho')``)."""
    k = torch.arange(n, dtype=torch.float64).view(-1, 1)
    i = torch.arange(n, dtype=torch.float64).view(1, -1)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype=dtype, device=device)


def zigzag_order(n: int = 8) -> list[tuple[int, int]]:
    """JPEG zig-zag scan of an ``n x n`` block as (row, col): (0,0), (0,1), (1,0), (2,0), (1,1), (0,2), ..."""
    order = []
    for s in range(2 * n - 1):
        diag = [(i, s - i) for i in range(n) if 0 <= s - i < n]
        order += diag if s % 2 else diag[::-1]
    return order


def block_dct8(img: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` (H, W multiples of 8) -> ``(N, H/8, W/8, 8, 8)`` orthonormal DCT-II of each 8x8 block."""
    return block_dct8_strided(img).permute(0, 1, 3, 2, 4)


def block_dct8_strided(img: torch.Tensor) -> torch.Tensor:
    """The block DCT as ``(N, H/8, 8 [u], W/8, 8 [v])``: ``D @ rows`` then ``cols @ D.T`` as two plain matmuls on
    the image's own layout (no block transposes); statistics per frequency reduce over dims 1 and 3."""
    n, h, w = img.shape
    if h % 8 or w % 8:
        raise ValueError(f"block DCT needs sides that are multiples of 8, got {h}x{w}")
    d = dct_matrix(8, img.dtype, img.device)
    rows = torch.matmul(d, img.reshape(n * h // 8, 8, w))  # (N*H/8, 8 u, W)
    return torch.matmul(rows.reshape(n * h // 8, 8, w // 8, 8), d.T).reshape(n, h // 8, 8, w // 8, 8)


@register_feature("dct")
class DCTFeatures(FeatureFamily):
    """Per zig-zag AC frequency 1..n_freq: mean|c|, std, zero share (|c| below the first edge, 0.5 by default:
    the coefficient would quantise to 0 at step 1); histogram of all AC |c|;
    first-digit distribution of AC |c| >= 1 and its chi-square-like distance to Benford's law.

    Counting relies on the 1/1024 snap of the coefficients (see ``forward``): values just below a digit boundary
    are then at least 1/1024 below it, so ``floor(v / 10^k)`` is exact in float32.
    """

    version = "3"  # 3: written for torch.compile (fused statistics); float round-off differs
    pool = ("mean",)

    def __init__(self, n_freq: int = 20, edges: tuple[float, ...] | list[float] = DEFAULT_EDGES) -> None:
        super().__init__()
        if not 1 <= n_freq <= 63:
            raise ValueError("n_freq must be in 1..63")
        edges = tuple(float(e) for e in edges)
        if list(edges) != sorted(edges) or not edges or edges[0] <= 0:
            raise ValueError(f"edges must be positive and increasing, got {edges}")
        self.n_freq = int(n_freq)
        self.hparams = {"n_freq": self.n_freq, "edges": list(edges)}
        zz = zigzag_order(8)
        self.register_buffer("zz_index", torch.tensor([i * 8 + j for i, j in zz], dtype=torch.long), persistent=False)
        self.edges = edges

    def feature_names(self) -> list[str]:
        p = self.name
        names = [f"{p}.zz{k:02d}_{s}" for k in range(1, self.n_freq + 1) for s in ("mean_abs", "std", "zero")]
        names += [f"{p}.ac_hist_{i:02d}" for i in range(len(self.hparams["edges"]) + 1)]
        names += [f"{p}.benford_{d}" for d in range(1, 10)] + [f"{p}.benford_dist", f"{p}.ac_ge1_share"]
        return names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        n = x.shape[0]
        luma = to_grey(x)[:, 0] * 255.0 - 128.0
        coef = block_dct8_strided(luma)  # (N, H/8, 8 u, W/8, 8 v)
        blocks = (1, 3)
        n_blocks = coef.shape[1] * coef.shape[3]
        # Frequencies (0|4, 0|4) of integer blocks are exact multiples of 1/8, so they sit exactly on the bin edges
        # and digit boundaries (0.5, 1, 10): snap float32 round-off to a 1/1024 grid so they land deterministically.
        coef = torch.round(coef * SNAP) / SNAP
        mag = coef.abs()
        sel = self.zz_index[1 : self.n_freq + 1]

        def per_frequency(v: torch.Tensor) -> torch.Tensor:  # (N, 8, 8) -> (N, 64) natural order
            return v.reshape(n, 64)

        mean = coef.mean(blocks, keepdim=True)
        std = (coef - mean).square().mean(blocks).sqrt()
        below = [per_frequency((mag < e).sum(blocks, dtype=torch.int32).float()) for e in self.edges]
        per_freq = torch.stack(
            [per_frequency(mag.mean(blocks))[:, sel], per_frequency(std)[:, sel], below[0][:, sel] / n_blocks], dim=-1
        ).reshape(n, -1)

        n_ac = 63 * n_blocks
        ac_below = torch.stack([b[:, 1:].sum(-1) for b in below], dim=-1) / n_ac
        cum = torch.cat([torch.zeros_like(ac_below[:, :1]), ac_below, torch.ones_like(ac_below[:, :1])], dim=-1)
        hist = cum[:, 1:] - cum[:, :-1]

        # leading digit: |AC| <= 8 * 255 < 10^4; the scale 10^k is built from exact sums; v < 1 gives digit 0 (dropped)
        scale = 1.0 + 9.0 * (mag >= 10.0).float() + 90.0 * (mag >= 100.0).float() + 900.0 * (mag >= 1000.0).float()
        digit = torch.floor(mag / scale).to(torch.int64)
        is_dc = torch.zeros(8, 1, 8, dtype=torch.bool, device=x.device)
        is_dc[0, 0, 0] = True
        digit = torch.where(is_dc, 0, digit)  # the DC coefficient is not counted
        digits = value_counts(digit, 10, (1, 2, 3, 4))[:, 1:].float()
        total = digits.sum(-1, keepdim=True)
        share = digits / total.clamp_min(1.0)
        benford = BENFORD.to(x.device)
        dist = torch.where(total[:, 0] > 0, ((share - benford).square() / benford).sum(-1), torch.zeros_like(total[:, 0]))
        out = [per_freq, hist, share, dist.unsqueeze(1), total / n_ac]
        return torch.nan_to_num(torch.cat(out, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
