"""WaRPAD: how much an encoder's embedding moves when an image's Haar high frequencies are perturbed.

Choi, Lee & Lee, "Training-free Detection of AI-generated images via Cropping Robustness" (NeurIPS 2025,
arXiv 2511.14030). Self-supervised encoders are trained to be invariant to RandomResizedCrop on *real* images, and
resizing mostly changes neighbouring-pixel differences, i.e. the Haar high-frequency bands. So for each tile ``t``
the base score is ``cos(f(t), f(t + alpha * HF(t)))`` where ``HF`` keeps all Haar detail bands of a ``levels``-level
decomposition (the approximation band zeroed); real images keep higher similarity than generated ones.

Paper protocol: resize the whole image to ``grid * P`` (``P`` = the encoder input size; 4 x 224 for DINOv2),
cut ``grid x grid`` tiles of ``P``, average the tile scores; ``alpha = 0.1``, ``levels = 2`` (official code). Here
the family receives native-resolution patches, so each patch is resized to ``grid * P`` and tiled the same way;
``grid = 1`` (default) scores each patch once at the encoder's input size. The perturbation is added in [0, 1]
pixel space before normalisation, which equals the paper's (normalised-space) perturbation since HF is linear and
blind to the per-channel mean shift. ``alpha < 0`` removes that fraction of the high frequencies instead.

Training-free score: ``warpad.score``, the mean tile similarity (pooled over patches: ``warpad.score.mean``);
HIGHER = more likely REAL,
so a fake-probability score is ``-warpad.score.mean`` (or ``1 - ...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from negate.features.base import register_feature
from negate.features.embedding import EncoderFamily
from negate.models.encoders import Encoder

STATS = ("score", "sim_min", "sim_max", "sim_std", "rel_l2_mean")


def haar_highpass(x: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """All Haar detail bands of a ``levels``-level 2-D DWT, reconstructed: ``IDWT(0, details) = x - A_J(x)``.

    With the orthonormal Haar wavelet the approximation at level J reconstructs to the mean over each
    ``2^J x 2^J`` block, so this is exactly ``x`` minus its block means. Sizes that are not multiples of ``2^J``
    are reflect-padded first (pytorch_wavelets' default zero-padding would differ at the border).
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    k = 2**levels
    h, w = x.shape[-2:]
    ph, pw = (-h) % k, (-w) % k
    xp = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate") if ph or pw else x
    low = F.avg_pool2d(xp, k)
    low = low.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)
    return (xp - low)[..., :h, :w]


@register_feature("warpad")
class WaRPADFamily(EncoderFamily):
    version = "1"
    pool = ("mean", "std")

    def __init__(
        self,
        encoder: str | Mapping | Any = "effnet_lite0",
        alpha: float = 0.1,
        levels: int = 2,
        grid: int = 1,
        pretrained: bool = True,
        batch_size: int = 32,
        device: str | None = None,
        precision: str = "fp32",
        model: Encoder | None = None,
    ):
        super().__init__(encoder, pretrained=pretrained, batch_size=batch_size, device=device, precision=precision,
                         model=model)
        if grid < 1 or levels < 1:
            raise ValueError(f"grid and levels must be >= 1, got grid={grid}, levels={levels}")
        self.alpha, self.levels, self.grid = float(alpha), int(levels), int(grid)
        self.hparams.update(alpha=self.alpha, levels=self.levels, grid=self.grid)

    def feature_names(self) -> list[str]:
        return [f"warpad.{s}" for s in STATS]

    def tiles(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N * grid^2, 3, P, P)``: resize to ``grid * P`` then cut a ``grid x grid`` tiling."""
        ph, pw = self.model.input_size
        g = self.grid
        big = self.model.resize(x) if g == 1 else _resize(x, (g * ph, g * pw), self.model.interpolation)
        n, c = big.shape[:2]
        t = big.view(n, c, g, ph, g, pw).permute(0, 2, 4, 1, 3, 5)
        return t.reshape(n * g * g, c, ph, pw)

    def similarities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-tile cosine similarity and relative L2 shift, each ``(N, grid^2)``."""
        t = self.tiles(x)
        z = self.model.embed(torch.cat([t, t + self.alpha * haar_highpass(t, self.levels)]))
        z0, z1 = z.chunk(2)
        sim = F.cosine_similarity(z0, z1, dim=-1, eps=1e-8)
        rel = (z1 - z0).norm(dim=-1) / z0.norm(dim=-1).clamp_min(1e-8)
        return sim.view(x.shape[0], -1), rel.view(x.shape[0], -1)

    def _stats(self, x: torch.Tensor) -> torch.Tensor:
        sim, rel = self.similarities(x)
        std = sim.std(dim=1, unbiased=False)
        return torch.stack([sim.mean(1), sim.amin(1), sim.amax(1), std, rel.mean(1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._run(self._stats, x, per_call=2 * self.grid**2)
        return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False).clamp_(0.0, 1.0)
