"""TAEF2: a tiny autoencoder for the FLUX.2 latent space (madebyollin/taesd, MIT), written from its layout.

Offline weights: two plain state dicts, ``taef2_encoder.pth`` and ``taef2_decoder.pth`` (no pickle objects; loaded
with ``weights_only=True`` and ``strict=True``). ``TinyAutoencoder.reconstruct`` takes and returns ``(N, 3, H, W)``
in [0, 1]; H and W are padded (reflect) to a multiple of 8 and cropped back. It is a distilled stand-in for the FLUX.2
VAE: 8x down/up-sampling, 32 latent channels. negate uses it to make *aligned reconstructions* of real images (the
same picture, regenerated through a generator's decoder: a fake whose content is identical to its real).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from negate.models.hub import ModelUnavailableError

TAEF2_ENV = "NEGATE_TAEF2_DIR"
TAEF2_FILES = ("taef2_encoder.pth", "taef2_decoder.pth")


def _conv(c_in: int, c_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, **kwargs)


class _Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _Block(nn.Module):
    """``ReLU(conv(x) + x)``; a pooled block first adds a 1x1 bottleneck with GroupNorm: ``x = x + pool(x)``."""

    def __init__(self, channels: int = 64, pooled: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU(),
                                  _conv(channels, channels))
        self.pool = nn.Sequential(nn.Conv2d(channels, 4 * channels, 1, bias=False), nn.GroupNorm(4, 4 * channels),
                                  nn.ReLU(), nn.Conv2d(4 * channels, channels, 1, bias=False)) if pooled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return F.relu(self.conv(x) + x)


def taef2_encoder(latent_channels: int = 32, c: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = [_conv(3, c), _Block(c)]
    for stage in range(3):
        layers += [_conv(c, c, stride=2, bias=False), *(_Block(c, pooled=stage == 2) for _ in range(3))]
    return nn.Sequential(*layers, _conv(c, latent_channels))


def taef2_decoder(latent_channels: int = 32, c: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = [_Clamp(), _conv(latent_channels, c), nn.ReLU(), *(_Block(c, pooled=True) for _ in range(3))]
    for blocks in (3, 3, 1):
        layers += [nn.Upsample(scale_factor=2), _conv(c, c, bias=False), *(_Block(c) for _ in range(blocks))]
    return nn.Sequential(*layers, _conv(c, 3))


class TinyAutoencoder(nn.Module):
    """Frozen TAEF2. ``forward`` = :meth:`reconstruct`."""

    downsample = 8

    def __init__(self, encoder: nn.Module, decoder: nn.Module, weights: str = "random-init"):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.decoder = decoder.eval().requires_grad_(False)
        self.name = "taef2"
        self.weights = weights

    def train(self, mode: bool = True) -> "TinyAutoencoder":  # frozen: GroupNorm has no running stats, but be explicit
        return super().train(False)

    def identity(self) -> dict:
        return {"ae": self.name, "weights": self.weights}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) images in [0, 1], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.downsample, (-w) % self.downsample
        padded = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
        out = self.decoder(self.encoder(padded)).clamp(0.0, 1.0)
        return out[..., :h, :w]

    forward = reconstruct


def default_taef2_dir() -> Path | None:
    """``$NEGATE_TAEF2_DIR``, else ``shared/models/taef2`` beside the checkout (our machines), else None."""
    env = os.environ.get(TAEF2_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "models" / "taef2"
        if (candidate / TAEF2_FILES[0]).is_file():
            return candidate
    return None


def load_taef2(weights_dir: str | Path | None = None, pretrained: bool = True, seed: int = 0) -> TinyAutoencoder:
    """TAEF2 with its offline weights from ``weights_dir`` (default :func:`default_taef2_dir`), or seeded random
    weights with ``pretrained=False`` (tests)."""
    if not pretrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return TinyAutoencoder(taef2_encoder(), taef2_decoder())
    folder = Path(weights_dir) if weights_dir else default_taef2_dir()
    missing = [f for f in TAEF2_FILES if folder is None or not (folder / f).is_file()]
    if missing:
        raise ModelUnavailableError(
            "madebyollin/taesd (taef2)", f"weights not found ({', '.join(missing)} in {folder or 'no folder'})",
            hint=f"Download taef2_encoder.pth and taef2_decoder.pth from github.com/madebyollin/taesd into a folder "
            f"and pass ae.weights_dir=FOLDER (or set {TAEF2_ENV}).",
        )
    enc, dec = taef2_encoder(), taef2_decoder()
    enc.load_state_dict(torch.load(folder / TAEF2_FILES[0], map_location="cpu", weights_only=True), strict=True)
    dec.load_state_dict(torch.load(folder / TAEF2_FILES[1], map_location="cpu", weights_only=True), strict=True)
    return TinyAutoencoder(enc, dec, weights=f"taef2:{folder.name}")
