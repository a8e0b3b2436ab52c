"""Where and how deep families run their models: device choice, mixed precision, channels-last, batching."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``None`` means full fp32. ``auto``: bf16 on GPU (fp16 overflows in some VAEs), fp32 on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def place(model: nn.Module, device: str | torch.device | None = "auto") -> nn.Module:
    """Move a frozen model to its device; channels-last on GPU, where convolutions prefer it."""
    dev = resolve_device(device)
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def module_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@torch.no_grad()
def run_batched(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, device: torch.device, batch_size: int,
    precision: str = "auto",
) -> torch.Tensor:
    """``fn`` over ``x`` in chunks of ``batch_size`` on ``device``; float32 result back on ``x``'s device."""
    if x.shape[0] == 0:
        raise ValueError("run_batched needs at least one sample")
    dtype = autocast_dtype(precision, device)
    outs = []
    for chunk in x.split(max(1, int(batch_size))):
        chunk = chunk.to(device, dtype=torch.float32, non_blocking=True)
        if device.type == "cuda":
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outs.append(fn(chunk).float())
    return torch.cat(outs).to(x.device)
