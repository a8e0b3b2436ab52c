"""Run the handcrafted families through ``torch.compile`` (inductor), falling back to eager code when it fails.

The families are chains of elementwise stencils and reductions over full-resolution patches; eagerly every step is a
pass over memory, compiled they fuse into a few vectorised loops (``scripts/bench_features.py`` measures both). The
family code is written for this: statistics reduce over spatial dims instead of reshaped rows, and paddings and
stride-2 phase splits run eagerly (``pad_eager``, ``polyphase2``) so the compiled loops read memory linearly.

Compiling costs seconds per family and batch shape (cached on disk by inductor across processes), so the engine
compiles only when there are enough images to pay for it (``extract.compile``).
"""

from __future__ import annotations

import logging
import time
import warnings

import torch

from negate.features.base import FeatureFamily

log = logging.getLogger(__name__)


class CompiledFamily:
    """Callable that runs ``family`` compiled; if compiling or running the compiled code fails (no C++ compiler, an
    unsupported op on some backend) it logs why once and runs the eager module from then on. An error that the eager
    module raises too is the input's fault and propagates.

    A batch smaller than the first one (the last batch, or one that lost unreadable images) is zero-padded to the
    first batch's size and the extra rows dropped: rows are independent, and another batch size would mean another
    compilation (tens of seconds) for one batch.
    """

    def __init__(self, family: FeatureFamily):
        self.family = family
        self.name = family.name
        self.pool = family.pool
        self._compiled = torch.compile(family)
        self.fell_back: str | None = None
        self.calls = 0
        self.rows: int | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fell_back is None:
            try:
                start = time.perf_counter()
                n = x.shape[0]
                self.rows = self.rows or n
                if n < self.rows:
                    x = torch.cat([x, x.new_zeros(self.rows - n, *x.shape[1:])])
                with warnings.catch_warnings():
                    # the FFT's complex output stays an eager op; inductor says so at every compile
                    warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for complex")
                    out = self._compiled(x)[:n]
                if not self.calls:
                    log.info("compiled feature family %r in %.1f s", self.name, time.perf_counter() - start)
                self.calls += 1
                return out
            except Exception as err:  # noqa: BLE001 - any compiler failure; the eager call below re-raises input errors
                out = self.family(x)[:n]
                self.fell_back = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                log.warning("torch.compile failed for feature family %r (%s); using eager code", self.name, self.fell_back)
                return out
        return self.family(x)


def compile_families(families: list[FeatureFamily]) -> list:
    """Compiled callables for the families that declare ``compilable`` (the handcrafted ones), the rest unchanged."""
    return [CompiledFamily(f) if f.compilable else f for f in families]


def should_compile(setting: bool | str, n_images: int, families: list[FeatureFamily], min_images: int) -> bool:
    """``extract.compile``: true, false, or ``auto`` (compile when at least ``min_images`` images are to be
    extracted and some family is compilable)."""
    if isinstance(setting, str):
        if setting.lower() != "auto":
            raise ValueError(f"extract.compile must be true, false or auto, got {setting!r}")
        return n_images >= min_images and any(f.compilable for f in families)
    return bool(setting) and any(f.compilable for f in families)
