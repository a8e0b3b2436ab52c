"""Neighbouring-pixel relationships (NPR, Tan et al., CVPR 2024): the residual ``x - up(down(x))``, factor 2.

Up-sampling layers make the pixels of each 2x2 block depend on each other. With nearest-neighbour re-sampling the
residual is zero at the kept phase and equals the in-block differences at the three other phases, so per-phase
statistics expose block-structured dependence; the bilinear variant measures how well a smooth 2x up-sampling of
the half-resolution image explains the patch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from negate.features.base import FeatureFamily, pad_eager, polyphase2, register_feature, to_grey
from negate.features.stats import channel_correlations, moments

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
    return polyphase2(x).mean((-4, -3))


def bilinear_up2_phases(s: torch.Tensor) -> list[torch.Tensor]:
    """The four phases ``up[..., a::2, b::2]`` (order 00, 01, 10, 11) of the 2x bilinear up-sampling of ``s``
    (``F.interpolate(s, scale_factor=2, mode='bilinear', align_corners=False)``): output row ``2i`` is
    ``0.75 s[i] + 0.25 s[i-1]``, row ``2i+1`` is ``0.75 s[i] + 0.25 s[i+1]`` (edge rows repeated), likewise for
    columns. Elementwise on shifted views, so it fuses when compiled, and nothing is interleaved."""
    p = pad_eager(s, (1, 1, 1, 1), "replicate")
    rows = [0.75 * p[..., 1:-1, :] + 0.25 * p[..., :-2, :], 0.75 * p[..., 1:-1, :] + 0.25 * p[..., 2:, :]]
    return [0.75 * r[..., 1:-1] + 0.25 * (r[..., :-2] if b == 0 else r[..., 2:]) for r in rows for b in (0, 1)]


@register_feature("npr")
class NPRFeatures(FeatureFamily):
    """Nearest: per channel, mean|r| at each non-trivial phase, std and kurtosis; bilinear: per channel moments,
    grey per-phase mean|r|; cross-channel correlation of both residuals. Residuals in 8-bit grey levels."""

    version = "2"  # 2: written for torch.compile (fused statistics); float round-off differs
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
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            raise ValueError(f"NPR needs even patch sides, got {h}x{w}")
        # residuals split by phase (N, C, phase, H/2, W/2): nearest is zero at phase 00, so it keeps 01, 10, 11
        ph = polyphase2(x).flatten(2, 3)  # (N, C, 4, H/2, W/2), phases 00, 01, 10, 11
        base = ph[:, :, 0:1]
        near = ph[:, :, 1:] - base
        half = ph.mean(2)  # the 2x2 block mean
        up = torch.stack(bilinear_up2_phases(half), dim=2)
        bil = ph - up
        every = (2, 3, 4)
        near_m, bil_m = moments(near, every), moments(bil, every)
        grey_bil = to_grey(bil)[:, 0]  # (N, 4 phases, H/2, W/2)
        out = [
            near.abs().mean((3, 4)).flatten(1),
            torch.stack([near_m["std"], near_m["kurt"]], dim=-1).flatten(1),
            torch.stack([bil.abs().mean(every), bil_m["std"], bil_m["skew"], bil_m["kurt"]], dim=-1).flatten(1),
            grey_bil.abs().mean((-2, -1)),
            channel_correlations(near_m["centred"], every),
            channel_correlations(bil_m["centred"], every),
        ]
        return torch.nan_to_num(torch.cat(out, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
