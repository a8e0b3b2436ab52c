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
import torch.nn.functional as F

from negate.features.base import FeatureFamily, register_feature, to_grey

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
    n, h, w = img.shape
    if h % 8 or w % 8:
        raise ValueError(f"block DCT needs sides that are multiples of 8, got {h}x{w}")
    blocks = img.reshape(n, h // 8, 8, w // 8, 8).transpose(2, 3)
    d = dct_matrix(8, img.dtype, img.device)
    return d @ blocks @ d.T


def first_digit(v: torch.Tensor) -> torch.Tensor:
    """Leading decimal digit (1..9) of positive ``v``; robust to float rounding at powers of ten."""
    e = torch.floor(torch.log10(v))
    mant = v / torch.pow(10.0, e)
    e = e + (mant >= 10.0).to(e.dtype) - (mant < 1.0).to(e.dtype)
    mant = v / torch.pow(10.0, e)
    return torch.floor(mant).clamp(1, 9).long()


@register_feature("dct")
class DCTFeatures(FeatureFamily):
    """Per zig-zag AC frequency 1..n_freq: mean|c|, std, zero share (|c| below the first edge, 0.5 by default:
    the coefficient would quantise to 0 at step 1); histogram of all AC |c|;
    first-digit distribution of AC |c| >= 1 and its chi-square-like distance to Benford's law.

    All count-based features come from one fine histogram per frequency whose edges are the union of the histogram
    edges and the first-digit boundaries (1..9 x 10^k), so a single ``bucketize`` + ``bincount`` serves them all.
    """

    version = "1"
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
        digit_edges = [d * 10.0**k for k in range(6) for d in range(1, 10)]
        fine = torch.tensor(sorted(set(edges) | set(digit_edges)), dtype=torch.float32)
        lower = torch.cat([torch.zeros(1), fine])  # lower bound of each fine bin
        coarse = torch.bucketize(lower, torch.tensor(edges), right=True)
        digit = torch.where(lower >= 1.0, first_digit(lower.clamp_min(1.0)), torch.zeros_like(coarse))
        self.register_buffer("fine_edges", fine, persistent=False)
        self.register_buffer("to_coarse", F.one_hot(coarse, len(edges) + 1).float(), persistent=False)
        self.register_buffer("to_digit", F.one_hot(digit, 10)[:, 1:].float(), persistent=False)
        # fine bin 0 is [0, smallest edge): with the default edges exactly |c| < 0.5
        self.zero_edge = float(fine[0])

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
        coef = block_dct8(luma).reshape(n, -1, 64)  # (N, blocks, 64), natural (row-major) frequency order
        # Frequencies (0|4, 0|4) of integer blocks are exact multiples of 1/8, so they sit exactly on the bin edges
        # and digit boundaries (0.5, 1, 10): snap float32 round-off to a 1/1024 grid so they land deterministically.
        coef = torch.round(coef * SNAP).div_(SNAP)
        n_blocks = coef.shape[1]
        mag = coef.abs()
        sel = self.zz_index[1 : self.n_freq + 1]

        n_fine = len(self.fine_edges) + 1
        fine = torch.bucketize(mag, self.fine_edges, out_int32=True, right=True)
        offsets = (torch.arange(n, device=x.device, dtype=torch.int32).view(-1, 1, 1) * 64
                   + torch.arange(64, device=x.device, dtype=torch.int32).view(1, 1, -1)) * n_fine
        counts = torch.bincount((fine + offsets).reshape(-1), minlength=n * 64 * n_fine).view(n, 64, n_fine).float()

        per_freq = torch.stack(
            [mag.mean(1)[:, sel], coef.std(1, correction=0)[:, sel], counts[:, sel, 0] / n_blocks], dim=-1
        ).reshape(n, -1)
        ac_counts = counts[:, 1:].sum(1)  # (N, n_fine), DC excluded
        n_ac = n_blocks * 63
        hist = ac_counts @ self.to_coarse / n_ac
        digits = ac_counts @ self.to_digit
        total = digits.sum(-1, keepdim=True)
        share = digits / total.clamp_min(1.0)
        benford = BENFORD.to(x.device)
        dist = torch.where(total[:, 0] > 0, ((share - benford).square() / benford).sum(-1), torch.zeros_like(total[:, 0]))
        out = [per_freq, hist, share, dist.unsqueeze(1), total / n_ac]
        return torch.nan_to_num(torch.cat(out, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
