"""Neighbouring-pixel relationships (NPR, Tan et al., CVPR 2024): the residual ``x - up(down(x))``, factor 2.

Up-sampling layers make the pixels of each 2x2 block depend on each other. With nearest-neighbour re-sampling the
residual is zero at the kept phase and equals the in-block differences at the three other phases, so per-phase
statistics expose block-structured dependence; the bilinear variant measures how well a smooth 2x up-sampling of
the half-resolution image explains the patch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from negate.features.base import FeatureFamily, register_feature, safe_moments, to_grey

CHANNELS = ("r", "g", "b")
NEAREST_PHASES = ("01", "10", "11")
ALL_PHASES = ("00", "01", "10", "11")


def npr_residual(x: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """``x - up2(down2(x))`` for ``(N, C, H, W)`` with even H, W; ``mode`` is ``nearest`` or ``bilinear``."""
    if mode == "nearest":
        down = x[..., 0::2, 0::2]
        up = down.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    elif mode == "bilinear":
        down = F.avg_pool2d(x, 2)  # == bilinear, align_corners=False, at exactly half size
        up = F.interpolate(down, scale_factor=2, mode="bilinear", align_corners=False)
    else:
        raise ValueError(f"unknown NPR mode {mode!r}")
    return x - up


def phase_planes(r: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, 4, H/2 * W/2)``: the four 2x2 phases 00, 01, 10, 11."""
    n, c = r.shape[:2]
    return torch.stack([r[..., i::2, j::2] for i in (0, 1) for j in (0, 1)], dim=2).reshape(n, c, 4, -1)


def _channel_corr(flat: torch.Tensor) -> torch.Tensor:
    m = flat.mean(-1, keepdim=True)
    centred = flat - m
    std = centred.square().mean(-1).sqrt().clamp_min(1e-6)
    pairs = [(0, 1), (0, 2), (1, 2)]
    return torch.stack(
        [(centred[:, i] * centred[:, j]).mean(-1) / (std[:, i] * std[:, j]) for i, j in pairs], dim=-1
    ).clamp(-1.0, 1.0)


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
        near = phase_planes(npr_residual(x, "nearest"))[:, :, 1:]  # phase 00 is identically zero
        near_flat = near.reshape(n, c, -1)
        near_m = safe_moments(near_flat)
        bil = npr_residual(x, "bilinear")
        bil_flat = bil.reshape(n, c, -1)
        bil_m = safe_moments(bil_flat)
        grey_bil = phase_planes(to_grey(bil))[:, 0]
        out = [
            near.abs().mean(-1).reshape(n, -1),
            torch.stack([near_m["std"], near_m["kurt"]], dim=-1).reshape(n, -1),
            torch.stack([bil_flat.abs().mean(-1), bil_m["std"], bil_m["skew"], bil_m["kurt"]], dim=-1).reshape(n, -1),
            grey_bil.abs().mean(-1),
            _channel_corr(near_flat),
            _channel_corr(bil_flat),
        ]
        return torch.nan_to_num(torch.cat(out, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
