"""Latent-diffusion autoencoders (VAEs) for AEROBLADE-style reconstruction: ``x -> decode(encode(x))``.

A generated image was decoded by some such autoencoder, so it lies near that decoder's output manifold and comes
back from an encode/decode round trip with less error than a photo does (Ricker et al., AEROBLADE, CVPR 2024).
``create_autoencoder("flux_klein")`` builds an :class:`Autoencoder` around the diffusers class each model ships
with; its ``reconstruct`` takes and returns ``(N, 3, H, W)`` in [0, 1] and handles the model's [-1, 1] input range,
padding to its downsampling factor, and mixed precision on GPU. ``encode`` / ``decode`` also expose the latents in
diffusion space (scaling/shift, or FLUX.2's patchify + BatchNorm statistics) exactly as the model defines them; for
reconstruction these transforms cancel, and the posterior mode (not a sample) is used so results are deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from negate.models.encoders import _snapshot_revision, _to_plain, config_value
from negate.models.hub import fetch_snapshot
from negate.models.taef2 import TinyAutoencoder
from negate.plugins import AUTOENCODERS, specs_from_config_group

AE_CLASSES = ("AutoencoderKL", "AutoencoderKLFlux2", "AutoencoderDC")
TINY_CLASSES = ("TinyAutoencoder",)  # negate's own modules (negate.models.taef2), weights from a local folder


@dataclass(frozen=True)
class AESpec:
    name: str
    cls: str  # diffusers class name
    repo_id: str
    subfolder: str | None = "vae"
    gated: bool = False
    license: str = ""

    def replace(self, **changes: Any) -> "AESpec":
        return dataclasses.replace(self, **changes)


# one spec per configs/ae/<name>.yaml, the single source of truth of what an autoencoder name means
AUTOENCODERS.add_loader(specs_from_config_group(AUTOENCODERS, AESpec))

_DOC_KEYS = ("latent_channels", "downsample", "scaling_factor", "shift_factor")
_OTHER_KEYS = ("family", "families", "batch_size", "device", "precision", "pretrained", "notes", "input_range",
               "weights_dir")


def list_autoencoders() -> list[str]:
    return AUTOENCODERS.names()


def _diffusers_class(name: str) -> type | None:
    """The diffusers class of ``cls``; None for negate's own tiny autoencoders."""
    if name in TINY_CLASSES:
        return None
    if name not in AE_CLASSES:
        raise ValueError(f"autoencoder class must be one of {AE_CLASSES + TINY_CLASSES}, got {name!r}")
    import diffusers

    return getattr(diffusers, name)


class Autoencoder(nn.Module):
    """A frozen diffusers VAE with [0, 1] image I/O. ``forward`` = :meth:`reconstruct`."""

    def __init__(self, vae: nn.Module, *, spec: AESpec, weights: str = ""):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.spec = spec
        self.name = spec.name
        self.repo_id = spec.repo_id
        self.weights = weights
        cfg = vae.config
        self.kind = type(vae).__name__
        blocks = cfg.encoder_block_out_channels if self.kind == "AutoencoderDC" else cfg.block_out_channels
        patch = tuple(getattr(cfg, "patch_size", None) or (1, 1)) if self.kind == "AutoencoderKLFlux2" else (1, 1)
        self.downsample = 2 ** (len(blocks) - 1) * patch[0]
        self.latent_channels = int(cfg.latent_channels)
        self.scaling_factor = float(getattr(cfg, "scaling_factor", None) or 1.0)
        self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)

    def train(self, mode: bool = True) -> "Autoencoder":
        return super().train(False)

    def identity(self) -> dict:
        return {"ae": self.name, "class": self.kind, "repo_id": self.repo_id, "subfolder": self.spec.subfolder,
                "weights": self.weights}

    # -- latent space as the model defines it -------------------------------------------------------------------

    def _flux2_stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(z)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps).to(z)
        return mean, std

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images (H, W multiples of :attr:`downsample`) -> diffusion-space latents (posterior mode)."""
        x = x01 * 2.0 - 1.0
        if self.kind == "AutoencoderDC":
            return self.vae.encode(x).latent * self.scaling_factor
        z = self.vae.encode(x).latent_dist.mode()
        if self.kind == "AutoencoderKLFlux2":
            n, c, h, w = z.shape  # patchify 2x2 then normalise with the VAE's BatchNorm running statistics
            z = z.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, c * 4, h // 2, w // 2)
            mean, std = self._flux2_stats(z)
            return (z - mean) / std
        return (z - self.shift_factor) * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`: diffusion-space latents -> ``[0, 1]`` images."""
        if self.kind == "AutoencoderDC":
            z = latents / self.scaling_factor
        elif self.kind == "AutoencoderKLFlux2":
            mean, std = self._flux2_stats(latents)
            z = latents * std + mean
            n, c4, h, w = z.shape
            z = z.reshape(n, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c4 // 4, h * 2, w * 2)
        else:
            z = latents / self.scaling_factor + self.shift_factor
        return ((self.vae.decode(z).sample + 1.0) / 2.0).clamp(0.0, 1.0)

    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        """Round trip of ``[0, 1]`` images of any size (reflect-padded to the downsampling factor, then cropped)."""
        h, w = x01.shape[-2:]
        m = self.downsample
        ph, pw = (-h) % m, (-w) % m
        x = F.pad(x01, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate") if ph or pw else x01
        return self.decode(self.encode(x))[..., :h, :w]

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x01)


def resolve_ae_spec(name_or_cfg: str | Mapping | Any, **overrides: Any) -> tuple[AESpec, dict]:
    cfg = {"name": name_or_cfg} if isinstance(name_or_cfg, str) else _to_plain(name_or_cfg)
    cfg.update(overrides)
    base = AUTOENCODERS.get(cfg.get("name"))
    spec_fields = {f.name for f in dataclasses.fields(AESpec)} - {"name"}
    spec = base.replace(**{k: v for k, v in cfg.items() if k in spec_fields})
    _diffusers_class(spec.cls)
    unknown = set(cfg) - spec_fields - {"name", "config"} - set(_DOC_KEYS) - set(_OTHER_KEYS)
    if unknown:
        raise ValueError(f"unknown autoencoder config keys {sorted(unknown)} for {base.name!r}")
    documented = {k: cfg[k] for k in _DOC_KEYS if cfg.get(k) is not None}
    return spec, {"documented": documented, "config": cfg.get("config")}


def create_autoencoder(
    name_or_cfg: str | Mapping | Any,
    pretrained: bool = True,
    config: Mapping | None = None,
    seed: int = 0,
    **overrides: Any,
) -> Autoencoder | TinyAutoencoder:
    """Build an :class:`Autoencoder` by registry name or composed ``cfg.ae`` (``taef2``: negate's
    :class:`~negate.models.taef2.TinyAutoencoder`, same ``reconstruct`` / ``identity``).

    ``pretrained=False`` instantiates the diffusers class from ``config`` (a dict of its constructor arguments,
    e.g. a tiny test configuration) with seeded random weights instead of downloading anything.
    """
    spec, extra = resolve_ae_spec(name_or_cfg, **overrides)
    cls = _diffusers_class(spec.cls)
    if cls is None:  # TAEF2: offline weights (weights_dir, NEGATE_TAEF2_DIR or shared/models/taef2), no hub call
        from negate.models.taef2 import load_taef2

        return load_taef2(config_value(name_or_cfg, overrides, "weights_dir"), pretrained=pretrained, seed=seed)
    if pretrained:
        path = fetch_snapshot(spec.repo_id, subfolder=spec.subfolder, gated=spec.gated,
                              patterns=None if spec.subfolder else ["*.json", "*.safetensors"])
        vae = cls.from_pretrained(path, subfolder=spec.subfolder)
        rev = _snapshot_revision(path)
        ae = Autoencoder(vae, spec=spec, weights=f"{spec.repo_id}@{rev}/{spec.subfolder or ''}")
        _check_documented(ae, extra["documented"])
        return ae
    arch = dict(config or extra["config"] or {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = cls(**arch)
    return Autoencoder(vae, spec=spec, weights=f"random-init(seed={seed})")


def _check_documented(ae: Autoencoder, documented: dict) -> None:
    actual = {"latent_channels": ae.latent_channels, "downsample": ae.downsample,
              "scaling_factor": ae.scaling_factor, "shift_factor": ae.shift_factor}
    for key, value in documented.items():
        if abs(float(value) - float(actual[key])) > 1e-6:
            raise ValueError(f"autoencoder {ae.name!r}: config says {key}={value!r} but the model's config gives "
                             f"{actual[key]!r}; fix the yaml")
