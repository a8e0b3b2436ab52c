"""The model-backed feature families of a recipe: the composed ``cfg.encoder`` and ``cfg.ae`` -> ready families.

``configs/encoder/<name>.yaml`` lists under ``families:`` which encoder-backed families it feeds and their
arguments (``embedding: {}``, ``warpad: {alpha: 0.1, ...}``); all of them share one loaded encoder.
``configs/ae/<name>.yaml`` feeds the ``aerecon`` family (arguments under ``family:``). ``name: none`` gives nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from negate.features.base import FeatureFamily
from negate.features.embedding import EncoderFamily
from negate.models.autoencoders import create_autoencoder
from negate.models.encoders import create_encoder
from negate.plugins import FEATURES, plain

# run-time keys that several families share; a family's own block may override them
_RUNTIME = ("batch_size", "device", "precision")


def encoder_family_names() -> list[str]:
    """The registered families an encoder can feed (``families:`` in ``configs/encoder/*.yaml``)."""
    return [name for name, cls in FEATURES.items() if issubclass(cls, EncoderFamily)]


def _is_none(cfg: dict) -> bool:
    return not cfg or cfg.get("name") in (None, "none")


def build_deep_families(encoder_cfg: Mapping | Any = None, ae_cfg: Mapping | Any = None) -> list[FeatureFamily]:
    """Feature families for the selected encoder (``embedding``, ``warpad``) and autoencoder (``aerecon``).

    Models are loaded here, once: a missing model raises :class:`~negate.models.hub.ModelUnavailableError` before
    any image is processed.
    """
    families: list[FeatureFamily] = []
    enc = plain(encoder_cfg)
    if not _is_none(enc):
        # a family set to null is switched off (e.g. encoder.families.warpad=null)
        wanted = {k: v for k, v in dict(enc.get("families") or {"embedding": {}}).items() if v is not None}
        unknown = set(wanted) - set(encoder_family_names())
        if unknown:
            raise ValueError(f"encoder families must be among {encoder_family_names()}, got {sorted(unknown)}")
        pretrained = bool(enc.get("pretrained", True))
        model_cfg = {k: v for k, v in enc.items() if k not in ("families", *_RUNTIME)}
        model = create_encoder(model_cfg, pretrained=pretrained)  # also checks the yaml's documented values
        shared = {k: enc[k] for k in _RUNTIME if k in enc}
        for fam_name, kwargs in wanted.items():
            args = {**shared, **dict(kwargs or {})}
            families.append(FEATURES.get(fam_name)(encoder=model_cfg, pretrained=pretrained, model=model, **args))
    ae = plain(ae_cfg)
    if not _is_none(ae):
        pretrained = bool(ae.get("pretrained", True))
        model_cfg = {k: v for k, v in ae.items() if k not in ("family", *_RUNTIME)}
        model = create_autoencoder(model_cfg, pretrained=pretrained)
        args = {**{k: ae[k] for k in _RUNTIME if k in ae}, **dict(ae.get("family") or {})}
        families.append(FEATURES.get("aerecon")(ae=model_cfg, pretrained=pretrained, model=model, **args))
    return families
