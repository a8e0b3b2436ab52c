"""Autoencoder reconstruction error (``ae=<name>``), after AEROBLADE (Ricker, Lukovnikov & Fischer, CVPR 2024).

Images decoded by a latent-diffusion autoencoder survive another encode/decode round trip through it better than
photos do. For each patch the family reconstructs it with the configured VAE (:mod:`negate.models.autoencoders`) and
measures, in [0, 1] pixel space, the per-pixel L1 (mean over channels) and squared error: their mean, and their
spread over a ``blocks x blocks`` grid of block means (std/max/min), since generated content is often reconstructed
unevenly. With ``highpass`` it also compares the Haar level-1 detail bands of image and reconstruction, where the
decoder's fingerprint lives, and that error relative to the image's own detail energy (``hp_l1_rel``): a busy photo
comes back with more absolute error than a smooth one whatever made it, so the ratio is the column to read when
content varies. AEROBLADE itself uses an LPIPS distance; LPIPS needs VGG weights from the network, so pixel-space
errors are used here.

Training-free score: ``aerecon.l1_mean`` (pooled: ``aerecon.l1_mean.mean``); LOWER = more likely GENERATED (by a
model sharing this autoencoder), so a fake-probability score is ``-aerecon.l1_mean.mean``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from negate.features.base import FeatureFamily, register_feature
from negate.features.warpad import haar_highpass
from negate.models.autoencoders import Autoencoder, create_autoencoder, resolve_ae_spec
from negate.models.runtime import autocast_dtype, channels_last_on_cuda, module_device, place, run_batched


def ae_config(ae: str | Mapping | Any) -> dict:
    """The resolved registry spec (plus any explicit architecture ``config``) as a plain dict."""
    spec, extra = resolve_ae_spec(ae)
    out = dataclasses.asdict(spec)
    out.pop("license", None)
    if extra["config"]:
        out["config"] = dict(extra["config"])
    return out


@register_feature("aerecon")
class AEReconFamily(FeatureFamily):
    version = "2"
    compilable = False
    pool = ("mean", "max")

    def __init__(
        self,
        ae: str | Mapping | Any = "flux_klein",
        pretrained: bool = True,
        blocks: int = 4,
        highpass: bool = True,
        batch_size: int = 8,
        device: str | None = None,
        precision: str = "fp32",
        model: Autoencoder | None = None,
    ):
        super().__init__()
        cfg = ae_config(ae)
        if model is None:
            model = create_autoencoder(ae, pretrained=pretrained)
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.model = place(model, device)
        self.blocks, self.highpass = int(blocks), bool(highpass)
        autocast_dtype(precision)  # validates
        self.batch_size, self.precision = int(batch_size), precision
        self.hparams: dict = {"ae": cfg, "pretrained": bool(pretrained), "blocks": self.blocks,
                              "highpass": self.highpass, "precision": precision}

    def config_for_cache(self) -> dict:
        return {**super().config_for_cache(), "model": self.model.identity()}

    def feature_names(self) -> list[str]:
        names = [f"{err}_{stat}" for err in ("l1", "mse") for stat in ("mean", "block_std", "block_max", "block_min")]
        if self.highpass:
            names += ["hp_l1_mean", "hp_mse_mean", "hp_l1_rel"]
        return [f"aerecon.{n}" for n in names]

    def _block_stats(self, err: torch.Tensor) -> list[torch.Tensor]:
        """``err`` ``(N, H, W)`` -> mean and std/max/min of its ``blocks x blocks`` block means."""
        means = F.adaptive_avg_pool2d(err.unsqueeze(1), self.blocks).flatten(1)
        return [err.flatten(1).mean(1), means.std(1, unbiased=False), means.amax(1), means.amin(1)]

    def _stats(self, x: torch.Tensor) -> torch.Tensor:
        rec = self.model.reconstruct(x).float()
        diff = rec - x
        cols = self._block_stats(diff.abs().mean(1)) + self._block_stats(diff.pow(2).mean(1))
        if self.highpass:
            detail = haar_highpass(x, 1)
            hp = haar_highpass(rec, 1) - detail
            hp_l1 = hp.abs().flatten(1).mean(1)
            cols += [hp_l1, hp.pow(2).flatten(1).mean(1), hp_l1 / (detail.abs().flatten(1).mean(1) + 1e-4)]
        return torch.stack(cols, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last_on_cuda(self.model)
        out = run_batched(self._stats, x, device=module_device(self.model), batch_size=self.batch_size,
                          precision=self.precision)
        return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
