"""The contract every feature family follows, and the decorator that registers one (``feature=<name>``).

A feature family is a batched ``nn.Module``: it takes patches ``x`` of shape ``(N, 3, S, S)``, float32 RGB in
[0, 1] (already cut at native resolution by the data module), and returns ``(N, D)`` float32 with no NaN/inf.
``feature_names`` gives the D stable, ordered column names (``"<family>.<stat>"``). The extraction engine pools
each family's per-patch rows over the patches of one image with the statistics in ``pool`` ("mean", "max",
"std"), so a model sees ``<name>.<pool>`` columns.

``version`` is part of the feature-cache key: bump it whenever a change to the code alters the numbers, so stale
cached features are never mixed with new ones.
"""

from __future__ import annotations

import functools
from typing import Callable, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from negate.plugins import FEATURES

_F = TypeVar("_F", bound=type)


def register_feature(name: str) -> Callable[[_F], _F]:
    """Class decorator: make a family available as ``feature=<name>`` and via :func:`create_feature`."""
    return FEATURES.register(name, name_attr="name")


def create_feature(name: str, **kwargs) -> "FeatureFamily":
    """Build a registered feature family by name (timm-style ``create_model``)."""
    return FEATURES.build(name, **kwargs)


def list_features() -> list[str]:
    """Every registered family, the deep ones (``embedding``, ``warpad``, ``aerecon``) included."""
    return FEATURES.names()


class FeatureFamily(nn.Module):
    """Base class: subclasses set ``version``, implement ``forward`` and ``feature_names``."""

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "1"
    pool: tuple[str, ...] = ("mean", "max")
    # written for torch.compile (negate.features.compiled); the model-backed families keep their own kernels
    compilable: ClassVar[bool] = True

    def feature_names(self) -> list[str]:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return len(self.feature_names())

    def config_for_cache(self) -> dict:
        """Everything that changes this family's numbers; hashed into the cache key.

        Subclasses store their constructor arguments in ``self.hparams`` (a plain dict) so this works for free.
        """
        return {"name": self.name, "version": self.version, "pool": list(self.pool), **getattr(self, "hparams", {})}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def to_grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of an ``(N, 3, ...)`` RGB batch -> ``(N, 1, ...)``."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


@torch.compiler.disable
def pad_eager(x: torch.Tensor, pad: tuple[int, ...], mode: str = "constant", value: float = 0.0) -> torch.Tensor:
    """``F.pad``, always run eagerly (a graph break under ``torch.compile``).

    Fused into the stencil that reads it, a padding makes inductor index every load through ``abs()``/masks and the
    loop stops vectorising (measured 5-15x slower); one eager pass writes a plain buffer the stencil reads linearly.
    """
    if mode == "constant":
        return F.pad(x, pad, value=value)
    return F.pad(x, pad, mode=mode)


@torch.compiler.disable
def polyphase2(x: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` (even sides) -> contiguous ``(..., 2, 2, H/2, W/2)`` with ``out[..., a, b, :, :] ==
    x[..., a::2, b::2]``, always run eagerly: a stride-2 load inside a compiled loop is a gather that does not
    vectorise, so the phases are split once into planes the compiled code reads linearly."""
    *lead, h, w = x.shape
    k = len(lead)
    split = x.reshape(*lead, h // 2, 2, w // 2, 2)  # (..., H/2, a, W/2, b)
    return split.permute(*range(k), k + 1, k + 3, k, k + 2).contiguous()


def constant_tensors(build: Callable) -> Callable:
    """Decorator for a builder of constant tensors (sampling weights, gather indices) whose last argument is the
    device: results are memoised per argument tuple (the device as a string) and the call stays out of
    ``torch.compile`` graphs, which neither trace numpy nor need to see how constants are made."""
    cached = functools.lru_cache(maxsize=32)(build)

    @torch.compiler.disable
    @functools.wraps(build)
    def get(*args):
        return cached(*args[:-1], str(args[-1]))

    return get
