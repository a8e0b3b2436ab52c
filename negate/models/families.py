"""Glue for the extraction engine: turn the composed ``cfg.encoder`` and ``cfg.ae`` into ready feature families.

``configs/encoder/<name>.yaml`` lists under ``families:`` which encoder-backed families it feeds and their
arguments (``embedding: {}``, ``warpad: {alpha: 0.1, ...}``); all of them share one loaded encoder.
``configs/ae/<name>.yaml`` feeds the ``aerecon`` family (arguments under ``family:``). ``name: none`` gives nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from negate.features.base import FeatureFamily
from negate.models.autoencoders import create_autoencoder
from negate.models.encoders import _to_plain, create_encoder

# run-time keys that several families share; a family's own block may override them
_RUNTIME = ("batch_size", "device", "precision")


def _family_classes() -> dict[str, type[FeatureFamily]]:
    from negate.features.aerecon import AEReconFamily
    from negate.features.embedding import EmbeddingFamily
    from negate.features.warpad import WaRPADFamily

    return {"embedding": EmbeddingFamily, "warpad": WaRPADFamily, "aerecon": AEReconFamily}


def _is_none(cfg: dict) -> bool:
    return not cfg or cfg.get("name") in (None, "none")


def build_deep_families(encoder_cfg: Mapping | Any = None, ae_cfg: Mapping | Any = None) -> list[FeatureFamily]:
    """Feature families for the selected encoder (``embedding``, ``warpad``) and autoencoder (``aerecon``).

    Models are loaded here, once: a missing model raises :class:`~negate.models.hub.ModelUnavailableError` before
    any image is processed.
    """
    classes = _family_classes()
    families: list[FeatureFamily] = []
    enc = _to_plain(encoder_cfg)
    if not _is_none(enc):
        # a family set to null is switched off (e.g. encoder.families.warpad=null)
        wanted = {k: v for k, v in dict(enc.get("families") or {"embedding": {}}).items() if v is not None}
        unknown = set(wanted) - {"embedding", "warpad"}
        if unknown:
            raise ValueError(f"encoder families must be among ['embedding', 'warpad'], got {sorted(unknown)}")
        pretrained = bool(enc.get("pretrained", True))
        model_cfg = {k: v for k, v in enc.items() if k not in ("families", *_RUNTIME)}
        model = create_encoder(model_cfg, pretrained=pretrained)  # also checks the yaml's documented values
        shared = {k: enc[k] for k in _RUNTIME if k in enc}
        for fam_name, kwargs in wanted.items():
            args = {**shared, **dict(kwargs or {})}
            families.append(classes[fam_name](encoder=model_cfg, pretrained=pretrained, model=model, **args))
    ae = _to_plain(ae_cfg)
    if not _is_none(ae):
        pretrained = bool(ae.get("pretrained", True))
        model_cfg = {k: v for k, v in ae.items() if k not in ("family", *_RUNTIME)}
        model = create_autoencoder(model_cfg, pretrained=pretrained)
        args = {**{k: ae[k] for k in _RUNTIME if k in ae}, **dict(ae.get("family") or {})}
        families.append(classes["aerecon"](ae=model_cfg, pretrained=pretrained, model=model, **args))
    return families
