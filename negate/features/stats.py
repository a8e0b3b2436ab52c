"""Batched summary statistics over the trailing (spatial) dims, shared by the feature families.

Written as plain reductions over ``dims`` (no reshape to a flat row first): under ``torch.compile`` a statistic of a
stencil expression (a residual of shifted views) then fuses into the loop that computes the expression, so the
residual is never stored; reshaping a computed tensor to ``(N, C, H*W)`` would force index arithmetic per element.
"""

from __future__ import annotations

import math

import torch

Dims = tuple[int, ...]


def moments(v: torch.Tensor, dims: Dims = (-1,), eps: float = 1e-12) -> dict[str, torch.Tensor]:
    """Mean, std, skewness and excess kurtosis over ``dims`` (finite for constant inputs: skew = kurt = 0), and the
    mean-free input ``centred`` (same shape as ``v``)."""
    mean = v.mean(dims, keepdim=True)
    c = v - mean
    c2 = c * c
    var = c2.mean(dims)
    m3 = (c2 * c).mean(dims)
    m4 = (c2 * c2).mean(dims)
    flat = var <= eps
    safe = var.clamp_min(eps)
    skew = torch.where(flat, torch.zeros_like(var), m3 / safe.pow(1.5))
    kurt = torch.where(flat, torch.zeros_like(var), m4 / safe.square() - 3.0)
    return {"mean": mean.reshape(var.shape), "std": var.sqrt(), "skew": skew, "kurt": kurt, "centred": c}


def mean_abs(v: torch.Tensor, dims: Dims = (-1,)) -> torch.Tensor:
    return v.abs().mean(dims)


def channel_correlations(centred: torch.Tensor, dims: Dims = (-1,)) -> torch.Tensor:
    """Mean-free ``(N, 3, ...)`` -> ``(N, 3)`` Pearson correlations rg, rb, gb over ``dims`` (0 for a flat channel)."""
    ch = centred.unbind(1)
    dims = tuple(d if d < 0 else d - 1 for d in dims)  # ``dims`` index the (N, 3, ...) input; channels are gone
    var = [(c * c).sum(dims).clamp_min(1e-20) for c in ch]
    pairs = [(0, 1), (0, 2), (1, 2)]
    return torch.stack([(ch[i] * ch[j]).sum(dims) / (var[i] * var[j]).sqrt() for i, j in pairs], dim=-1).clamp(-1.0, 1.0)


def level_histogram(levels: torch.Tensor, edges: list[float], dims: Dims = (-1,)) -> torch.Tensor:
    """Fractions of ``levels`` (non-negative) in ``[0,e0), [e0,e1), ..., [e_last, inf)`` over ``dims`` (the bins of
    ``numpy.histogram``): one count of ``levels >= e`` per edge, a single fused pass when compiled."""
    size = 1
    for d in dims:
        size *= levels.shape[d]
    shape = levels.sum(dims).shape
    at_least = [torch.ones(shape, device=levels.device)]
    at_least += [(levels >= e).sum(dims, dtype=torch.int32).float() / size for e in edges]
    at_least.append(torch.zeros(shape, device=levels.device))
    cum = torch.stack(at_least, dim=-1)
    return cum[..., :-1] - cum[..., 1:]


def value_counts(codes: torch.Tensor, n_values: int, dims: Dims) -> torch.Tensor:
    """How often each integer ``0..n_values-1`` occurs in ``codes`` over ``dims`` (the other dims lead, counts last).

    Eagerly one ``bincount``; under ``torch.compile`` one equality count per value, which inductor fuses into the
    loop that computes ``codes`` (a bincount would be a separate pass plus a min/max scan of its input)."""
    if torch.compiler.is_compiling():
        return torch.stack([(codes == v).sum(dims, dtype=torch.int32) for v in range(n_values)], dim=-1)
    dims = sorted(d % codes.dim() for d in dims)
    keep = [d for d in range(codes.dim()) if d not in dims]
    moved = codes.permute(*keep, *dims)
    lead = moved.shape[: len(keep)]
    flat = moved.reshape(math.prod(lead), -1).long()
    flat = flat + torch.arange(flat.shape[0], device=codes.device).view(-1, 1) * n_values
    return torch.bincount(flat.reshape(-1), minlength=flat.shape[0] * n_values).view(*lead, n_values)
