"""Scale dependence of forensic traces across seeded random resized crops of one patch.

A camera's noise and a generator's up-sampling artefacts live at the pixel scale of the file; re-sampling a crop to
a fixed size changes them in characteristic ways. K random resized crops (torchvision ``RandomResizedCrop``
sampling, from a fixed seed, so every patch of a given size gets the same K crops) are resized (bilinear,
anti-aliased) to ``out_size``; a few cheap spectral and residual summaries are computed on each, and the family
reports how they spread across crops (std, range) and how they trend with the crop's zoom factor (least-squares
slope against log2 of zoom).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from negate.features.base import FeatureFamily, polyphase2, register_feature, to_grey
from negate.features.laplacian import laplacian_residual, median_residual
from negate.features.stats import moments
from negate.features.spectral import LOG_EPS, hf_energy_ratio, magnitude, radial_profile, windowed_rfft2

SUMMARIES = ("lap_mean_abs", "lap_kurt", "med_mean_abs", "hf_ratio", "spec_slope", "npr_mean_abs")


def crop_boxes(h: int, w: int, k: int, scale: tuple[float, float], ratio: tuple[float, float], seed: int) -> list:
    """``k`` boxes ``(top, left, height, width)`` sampled like ``torchvision.transforms.RandomResizedCrop.get_params``
    from ``torch.Generator().manual_seed(seed)``; deterministic for a given ``(h, w, k, scale, ratio, seed)``."""
    gen = torch.Generator().manual_seed(seed)
    area = h * w
    log_ratio = torch.log(torch.tensor(ratio))  # float32, as torchvision does
    boxes = []
    for _ in range(k):
        for _attempt in range(10):
            target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=gen).item()
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=gen)).item()
            cw = int(round(math.sqrt(target * aspect)))
            ch = int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, size=(1,), generator=gen).item())
                left = int(torch.randint(0, w - cw + 1, size=(1,), generator=gen).item())
                boxes.append((top, left, ch, cw))
                break
        else:  # torchvision falls back to a centre crop clamped to the ratio range
            in_ratio = w / h
            if in_ratio < min(ratio):
                cw, ch = w, int(round(w / min(ratio)))
            elif in_ratio > max(ratio):
                cw, ch = int(round(h * max(ratio))), h
            else:
                cw, ch = w, h
            boxes.append(((h - ch) // 2, (w - cw) // 2, ch, cw))
    return boxes


def trace_summaries(grey: torch.Tensor, n_bins: int = 16) -> torch.Tensor:
    """``(N, 1, S, S)`` grey in [0, 1] -> ``(N, 6)`` summaries named in ``SUMMARIES`` (residuals in grey levels)."""
    g = grey * 255.0
    w = g.shape[-1]
    spatial = (-3, -2, -1)
    lap = laplacian_residual(g)
    lap_m = moments(lap, spatial)
    med = median_residual(g)
    mag = magnitude(windowed_rfft2(g[:, 0]))
    profile = radial_profile(torch.log(mag + LOG_EPS), n_bins, w)
    # slope of the log-spectrum over the upper half of frequencies, per unit of normalised radius
    half = n_bins // 2
    slope = (profile[:, -1] - profile[:, half]) / ((n_bins - 1 - half) / n_bins)
    # mean |x - nearest up2(down2(x))| over the three phases where it is not identically zero
    ph = polyphase2(g).flatten(-4, -3)  # (N, 1, 4, S/2, S/2)
    npr = (ph[:, :, 1:] - ph[:, :, 0:1]).abs().mean((-4, -3, -2, -1))
    return torch.stack([lap.abs().mean(spatial), lap_m["kurt"], med.abs().mean(spatial), hf_energy_ratio(mag, w), slope, npr], dim=1)


@register_feature("resize_crop")
class ResizeCropConsistency(FeatureFamily):
    """Per trace summary: std and range across K crops, and slope against log2(zoom)."""

    version = "3"  # 3: written for torch.compile (fused statistics); float round-off differs
    pool = ("mean",)

    def __init__(
        self,
        k: int = 6,
        out_size: int = 128,
        scale: tuple[float, float] | list[float] = (0.25, 1.0),
        ratio: tuple[float, float] | list[float] = (3 / 4, 4 / 3),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if k < 2:
            raise ValueError("k must be >= 2 (a spread needs two crops)")
        if out_size % 8:
            raise ValueError("out_size must be a multiple of 8")
        self.k, self.out_size, self.seed = int(k), int(out_size), int(seed)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hparams = {"k": self.k, "out_size": self.out_size, "scale": list(self.scale), "ratio": list(self.ratio), "seed": self.seed}

    def feature_names(self) -> list[str]:
        return [f"{self.name}.{s}_{stat}" for s in SUMMARIES for stat in ("std", "range", "zoom_slope")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        n, _, h, w = x.shape
        grey = to_grey(x)
        boxes = crop_boxes(h, w, self.k, self.scale, self.ratio, self.seed)
        crops = torch.cat(
            [
                F.interpolate(
                    grey[:, :, t : t + ch, l : l + cw],
                    size=(self.out_size, self.out_size),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
                for t, l, ch, cw in boxes
            ]
        )  # (K*N, 1, out, out), crop-major
        summaries = trace_summaries(crops).view(self.k, n, -1).permute(1, 2, 0)  # (N, M, K)
        zoom = torch.tensor([math.log2(self.out_size / math.sqrt(ch * cw)) for _, _, ch, cw in boxes], device=x.device)
        zc = zoom - zoom.mean()
        centred = summaries - summaries.mean(-1, keepdim=True)
        slope = (centred * zc).sum(-1) / zc.square().sum().clamp_min(1e-8)
        spread = summaries.std(-1, correction=0)
        rng = summaries.amax(-1) - summaries.amin(-1)
        out = torch.stack([spread, rng, slope], dim=-1).reshape(n, -1)
        return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
