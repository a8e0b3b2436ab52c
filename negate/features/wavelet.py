"""Multi-level 2-D Haar wavelet statistics of the grey image.

Each level splits the approximation into horizontal, vertical and diagonal detail subbands. Natural images have
heavy-tailed detail coefficients whose magnitude decays steadily across scales; generators and their up-samplers
change the tails (kurtosis), the finest-scale energy and that decay.

``haar_dwt2`` follows ``pywt.dwt2(x, 'haar')`` exactly (same subband order and signs, symmetric extension of an odd
side), so the coefficients can be checked against PyWavelets.
"""

from __future__ import annotations

import math

import torch

from negate.features.base import FeatureFamily, polyphase2, register_feature, to_grey
from negate.features.stats import moments

SUBBANDS = ("h", "v", "d")


def haar_dwt2(x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One Haar level on the last two dims: ``(cA, (cH, cV, cD))`` as ``pywt.dwt2(x, 'haar')`` returns them."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:  # pywt's default 'symmetric' mode repeats the last row / column for a length-2 filter
        x = torch.cat([x, x[..., -1:, :]], dim=-2) if h % 2 else x
        x = torch.cat([x, x[..., :, -1:]], dim=-1) if w % 2 else x
    ph = polyphase2(x)
    a, b, c, d = ph[..., 0, 0, :, :], ph[..., 0, 1, :, :], ph[..., 1, 0, :, :], ph[..., 1, 1, :, :]
    top, bottom = a + b, c + d
    left_minus_right_top, left_minus_right_bottom = a - b, c - d
    ca = (top + bottom) * 0.5
    ch = (top - bottom) * 0.5
    cv = (left_minus_right_top + left_minus_right_bottom) * 0.5
    cd = (left_minus_right_top - left_minus_right_bottom) * 0.5
    return ca, (ch, cv, cd)


def haar_wavedec2(x: torch.Tensor, levels: int) -> list:
    """``pywt.wavedec2(x, 'haar', level=levels)`` layout: ``[cA_n, (cH_n, cV_n, cD_n), ..., (cH_1, cV_1, cD_1)]``."""
    details = []
    approx = x
    for _ in range(levels):
        approx, det = haar_dwt2(approx)
        details.append(det)
    return [approx] + details[::-1]


@register_feature("wavelet")
class WaveletFeatures(FeatureFamily):
    """Per level (1 = finest) and subband: mean|c|, std, kurtosis; per level: detail energy share; per subband:
    log decay of mean|c| between consecutive levels."""

    version = "2"  # 2: written for torch.compile (fused statistics); float round-off differs
    pool = ("mean", "max")

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError("levels must be >= 1")
        self.levels = int(levels)
        self.hparams = {"levels": self.levels}

    def feature_names(self) -> list[str]:
        names = []
        for lvl in range(1, self.levels + 1):
            names += [f"{self.name}.l{lvl}_{b}_{s}" for b in SUBBANDS for s in ("mean_abs", "std", "kurt")]
            names.append(f"{self.name}.l{lvl}_hf_energy_ratio")
        for lvl in range(1, self.levels):
            names += [f"{self.name}.decay_l{lvl}{lvl + 1}_{b}" for b in SUBBANDS]
        return names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        n, _, h, w = x.shape
        if min(h, w) < 2**self.levels:
            raise ValueError(f"{self.levels} Haar levels need patches of at least {2**self.levels} pixels")
        approx = to_grey(x)[:, 0] * 255.0
        stats, ratios, mean_abs = [], [], []
        for _ in range(self.levels):
            approx, det = haar_dwt2(approx)
            bands = torch.stack(det, dim=1)  # (N, 3, h, w)
            m = moments(bands, (-2, -1))
            level_abs = bands.abs().mean((-2, -1))
            mean_abs.append(level_abs)
            stats.append(torch.stack([level_abs, m["std"], m["kurt"]], dim=-1).reshape(n, -1))
            detail_energy = bands.square().mean((-2, -1)).sum(-1)
            approx_energy = (approx - approx.mean(dim=(-2, -1), keepdim=True)).square().mean(dim=(-2, -1))
            ratios.append(detail_energy / (detail_energy + approx_energy).clamp_min(1e-8))
        out = []
        for lvl in range(self.levels):
            out += [stats[lvl], ratios[lvl].unsqueeze(1)]
        eps = 1e-3  # in grey levels: a flat band decays by 0, not log(0/0)
        for lvl in range(self.levels - 1):
            out.append(torch.log((mean_abs[lvl + 1] + eps) / (mean_abs[lvl] + eps)) / math.log(2.0))
        return torch.nan_to_num(torch.cat(out, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
