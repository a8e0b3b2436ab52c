"""Pretrained-encoder embeddings as features (``encoder=<name>``), plus the base class of encoder-backed families.

Each patch is resized to the encoder's own input size and normalised by the encoder (see
:mod:`negate.models.encoders`); the family returns its pooled embedding, ``embedding.0000`` ... ``embedding.<D-1>``.
The model identity (repo id, weights revision, pooling) is part of :meth:`config_for_cache`, so switching
encoders never mixes cached features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from negate.features.base import FeatureFamily, register_feature
from negate.models.encoders import Encoder, create_encoder, resolve_spec
from negate.models.runtime import autocast_dtype, channels_last_on_cuda, module_device, place, run_batched


def encoder_config(encoder: str | Mapping | Any) -> dict:
    """The resolved registry spec of an encoder name/config as a plain dict (what the family's numbers depend on)."""
    spec, _ = resolve_spec(encoder)
    out = dataclasses.asdict(spec)
    out.pop("license", None)
    return out


class EncoderFamily(FeatureFamily):
    """A feature family that runs one frozen :class:`~negate.models.encoders.Encoder`.

    ``model`` lets several families share one loaded encoder (see :func:`negate.features.deep.build_deep_families`).
    ``device``/``batch_size`` only decide where and how fast it runs, so they are kept out of the cache key;
    ``precision`` (fp32 | bf16 | fp16 autocast) changes the numbers slightly, so it is in it. ``device=None``
    leaves placement to the caller (the extraction engine's Lightning trainer).
    """

    compilable = False  # a network with its own kernels; compiling it costs minutes for little on CPU

    def __init__(
        self,
        encoder: str | Mapping | Any = "effnet_lite0",
        pretrained: bool = True,
        batch_size: int = 32,
        device: str | None = None,
        precision: str = "fp32",
        model: Encoder | None = None,
    ):
        super().__init__()
        cfg = encoder_config(encoder)
        if model is None:
            model = create_encoder(encoder, pretrained=pretrained)
        self.model = place(model, device)
        self.batch_size = int(batch_size)
        autocast_dtype(precision)  # validates
        self.precision = precision
        self.hparams: dict = {"encoder": cfg, "pretrained": bool(pretrained), "precision": precision}

    def config_for_cache(self) -> dict:
        return {**super().config_for_cache(), "model": self.model.identity()}

    def _run(self, fn, x: torch.Tensor, per_call: int = 1) -> torch.Tensor:
        channels_last_on_cuda(self.model)
        dev = module_device(self.model)
        return run_batched(fn, x, device=dev, batch_size=max(1, self.batch_size // per_call), precision=self.precision)


@register_feature("embedding")
class EmbeddingFamily(EncoderFamily):
    version = "1"
    pool = ("mean",)

    def feature_names(self) -> list[str]:
        return [f"embedding.{i:04d}" for i in range(self.model.embed_dim)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(self._run(self.model, x), nan=0.0, posinf=0.0, neginf=0.0)
