"""How deep families run their models: placement, precision, channels-last, batching.

Inside the extraction engine Lightning moves the families (and so their models) to its device; ``device=None``
leaves a model where it was built (CPU) for exactly that. Scripts may pass ``device="auto"`` / ``"cuda"``.
Precision is explicit and identical on every device (so it can be part of the feature-cache key): ``fp32``
(default), or ``bf16`` / ``fp16`` autocast, about twice as fast on a GPU and cached separately.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """``None`` means plain fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def place(model: nn.Module, device: str | torch.device | None = None) -> nn.Module:
    """Move a frozen model to ``device`` (``None``: leave it where it is)."""
    return model if device is None else model.to(resolve_device(device))


def module_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def channels_last_on_cuda(model: nn.Module) -> None:
    """Convolutions prefer channels-last on GPU; convert once, after whoever placed the model."""
    if module_device(model).type == "cuda" and not getattr(model, "_negate_channels_last", False):
        model.to(memory_format=torch.channels_last)
        model._negate_channels_last = True


@torch.no_grad()
def run_batched(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, device: torch.device, batch_size: int,
    precision: str = "fp32",
) -> torch.Tensor:
    """``fn`` over ``x`` in chunks of ``batch_size`` on ``device``; float32 result back on ``x``'s device."""
    if x.shape[0] == 0:
        raise ValueError("run_batched needs at least one sample")
    dtype = autocast_dtype(precision)
    outs = []
    for chunk in x.split(max(1, int(batch_size))):
        chunk = chunk.to(device, dtype=torch.float32, non_blocking=True)
        if device.type == "cuda":
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        # an explicit (possibly disabled) autocast also overrides any autocast the caller runs under
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            outs.append(fn(chunk).float())
    return torch.cat(outs).to(x.device)
