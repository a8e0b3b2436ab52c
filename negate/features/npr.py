"""Neighbouring-pixel relationships (NPR, Tan et al., CVPR 2024): the residual ``x - up(down(x))``, factor 2.

Up-sampling layers make the pixels of each 2x2 block depend on each other. With nearest-neighbour re-sampling the
residual is zero at the kept phase and equals the in-block differences at the three other phases, so per-phase
statistics expose block-structured dependence; the bilinear variant measures how well a smooth 2x up-sampling of
the half-resolution image explains the patch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from negate.features.base import FeatureFamily, register_feature, to_grey
from negate.features.laplacian import channel_correlations, moments

CHANNELS = ("r", "g", "b")
NEAREST_PHASES = ("01", "10", "11")
ALL_PHASES = ("00", "01", "10", "11")


def npr_residual(x: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """``x - up2(down2(x))`` for ``(N, C, H, W)`` with even H, W; ``mode`` is ``nearest`` or ``bilinear``
    (down-sampling by 2 with half-pixel centres is the 2x2 mean; up-sampling ``align_corners=False``)."""
    if mode == "nearest":
        up = x[..., 0::2, 0::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    elif mode == "bilinear":
        up = F.interpolate(half_mean(x), scale_factor=2, mode="bilinear", align_corners=False)
    else:
        raise ValueError(f"unknown NPR mode {mode!r}")
    return x - up


def half_mean(x: torch.Tensor) -> torch.Tensor:
    """2x2 block mean (``F.avg_pool2d(x, 2)``, without its slow CPU kernel)."""
    out = x[..., 0::2, 0::2] + x[..., 0::2, 1::2]
    out += x[..., 1::2, 0::2]
    out += x[..., 1::2, 1::2]
    return out.mul_(0.25)


def nearest_phase_residuals(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, 3, H/2 * W/2)``: the nearest-neighbour NPR residual at phases 01, 10, 11 (it is
    identically zero at phase 00): the in-block differences to the block's top-left pixel."""
    n, c = x.shape[:2]
    base = x[..., 0::2, 0::2]
    return torch.stack([x[..., i::2, j::2] - base for i, j in ((0, 1), (1, 0), (1, 1))], dim=2).reshape(n, c, 3, -1)


@register_feature("npr")
class NPRFeatures(FeatureFamily):
    """Nearest: per channel, mean|r| at each non-trivial phase, std and kurtosis; bilinear: per channel moments,
    grey per-phase mean|r|; cross-channel correlation of both residuals. Residuals in 8-bit grey levels."""

    version = "1"
    pool = ("mean", "max")

    def __init__(self) -> None:
        super().__init__()
        self.hparams = {}

    def feature_names(self) -> list[str]:
        p = self.name
        names = [f"{p}.near_{ch}_phase{ph}_mean_abs" for ch in CHANNELS for ph in NEAREST_PHASES]
        names += [f"{p}.near_{ch}_{s}" for ch in CHANNELS for s in ("std", "kurt")]
        names += [f"{p}.bil_{ch}_{s}" for ch in CHANNELS for s in ("mean_abs", "std", "skew", "kurt")]
        names += [f"{p}.bil_grey_phase{ph}_mean_abs" for ph in ALL_PHASES]
        names += [f"{p}.{kind}_corr_{a}{b}" for kind in ("near", "bil") for a, b in (("r", "g"), ("r", "b"), ("g", "b"))]
        return names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() * 255.0
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"NPR needs even patch sides, got {h}x{w}")
        near = nearest_phase_residuals(x)
        near_m = moments(near.reshape(n, c, -1))
        bil = npr_residual(x, "bilinear")
        bil_flat = bil.reshape(n, c, -1)
        bil_m = moments(bil_flat)
        grey_bil = to_grey(bil)
        out = [
            near.abs().mean(-1).reshape(n, -1),
            torch.stack([near_m["std"], near_m["kurt"]], dim=-1).reshape(n, -1),
            torch.stack([bil_flat.abs().mean(-1), bil_m["std"], bil_m["skew"], bil_m["kurt"]], dim=-1).reshape(n, -1),
            torch.stack([grey_bil[..., i::2, j::2].abs().mean(dim=(-3, -2, -1)) for i in (0, 1) for j in (0, 1)], dim=-1),
            channel_correlations(near_m["centred"]),
            channel_correlations(bil_m["centred"]),
        ]
        return torch.nan_to_num(torch.cat(out, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
