"""Feature extraction: a LightningModule runs the feature families on patch batches; a prediction writer streams the
pooled rows into the feature cache; :func:`extract_features` computes only what the cache lacks and returns the
feature matrix for a list of (file, view) items.

Running through ``Trainer.predict`` gives device placement, precision, DDP (one process per device, every item seen
once thanks to Lightning's unrepeated distributed sampler) and a progress bar for free; results never travel back
through memory, only through the cache, so memory stays flat in the number of images.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn

from negate.cache import FailureStore, FeatureStore, config_hash, ensure_writable, family_folder
from negate.data.dataset import ExtractionItem, PatchConfig
from negate.data.datamodule import PatchDataModule
from negate.features.base import FeatureFamily
from negate.features.compiled import compile_families, should_compile

log = logging.getLogger(__name__)

POOLS = {
    "mean": lambda r: r.mean(dim=1),
    "max": lambda r: r.amax(dim=1),
    "min": lambda r: r.amin(dim=1),
    "std": lambda r: r.std(dim=1, unbiased=False),
}


def tune_malloc() -> bool:
    """Keep freed heap memory in the process (glibc): the families' large temporaries are then reused instead of
    being mapped afresh, ~1.4x faster extraction on CPU (scripts/bench_features.py). Inherited by forked loader
    workers. The price is that the process keeps its peak heap, which is flat in the number of images."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    return bool(ok and libc.mallopt(m_top_pad, 64 << 20))


def pooled_names(family: FeatureFamily) -> list[str]:
    return [f"{name}.{stat}" for stat in family.pool for name in family.feature_names()]


def pool_patches(rows: torch.Tensor, stats: tuple[str, ...]) -> torch.Tensor:
    """``(B, P, D)`` per-patch rows -> ``(B, D * len(stats))`` pooled over patches."""
    return torch.cat([POOLS[s](rows) for s in stats], dim=1)


class FeatureExtractor(L.LightningModule):
    """``compiled=True`` runs the compilable families through ``torch.compile`` (built at the first batch, in the
    process that runs it, so the module still pickles for ``ddp_spawn``)."""

    def __init__(self, families: list[FeatureFamily], compiled: bool = False):
        super().__init__()
        self.families = nn.ModuleList(families)
        self.compiled = compiled  # not ``compile``: that would hide nn.Module.compile
        self._runners: list | None = None

    def runners(self) -> list:
        if self._runners is None:
            self._runners = compile_families(list(self.families)) if self.compiled else list(self.families)
        return self._runners

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, P, 3, S, S)`` uint8 or [0, 1] float -> {family name: (B, D_pooled)}."""
        b, p = patches.shape[:2]
        flat = patches.flatten(0, 1)
        flat = flat.float().div_(255.0) if flat.dtype == torch.uint8 else flat.float()
        out = {}
        for family in self.runners():
            rows = family(flat).float().reshape(b, p, -1)
            out[family.name] = torch.nan_to_num(pool_patches(rows, family.pool), nan=0.0, posinf=0.0, neginf=0.0)
        return out

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        features = {} if batch["patches"] is None else self(batch["patches"])
        return {"keys": batch["keys"], "features": features, "failed": batch["failed"]}


class CacheWriter(BasePredictionWriter):
    """Buffers pooled rows per family and writes a shard every ``shard_rows`` images (and at the end)."""

    def __init__(self, stores: dict[str, FeatureStore], failures: FailureStore, shard_rows: int = 256):
        super().__init__(write_interval="batch")
        self.stores = stores
        self.failures = failures
        self.shard_rows = shard_rows
        self.computed = 0
        self._keys: list[str] = []
        self._values: dict[str, list[np.ndarray]] = {name: [] for name in stores}
        self._failed: list[tuple[str, str]] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        if prediction["keys"]:
            self._keys.extend(prediction["keys"])
            for name, values in prediction["features"].items():
                self._values[name].append(values.detach().cpu().numpy())
            self.computed += len(prediction["keys"])
        self._failed.extend(prediction["failed"])
        if len(self._keys) >= self.shard_rows:
            self.flush()

    def on_predict_epoch_end(self, trainer, pl_module):
        self.flush()

    def on_exception(self, trainer, pl_module, exception):
        """Interrupted (SIGINT/SIGTERM) or failed: keep the rows computed so far, so a re-run resumes from them. A
        buffer caught mid-update is refused by the stores' row-count check and recomputed next time."""
        try:
            self.flush()
        except Exception as err:  # noqa: BLE001  (the original exception is the one to report)
            log.debug("rows not flushed after %s: %s", type(exception).__name__, err)

    def flush(self) -> None:
        for name, chunks in self._values.items():
            if chunks:
                self.stores[name].append(self._keys, np.concatenate(chunks))
            self._values[name] = []
        self._keys = []
        self.failures.append(self._failed)
        self._failed = []


@dataclass
class FeatureTable:
    """Features for the items that could be extracted, in item order, plus the ones that could not."""

    keys: list[str]
    X: np.ndarray
    names: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    computed: int = 0


def extract_features(
    items: list[ExtractionItem],
    families: list[FeatureFamily],
    patches: PatchConfig,
    cache_root: str | Path,
    trainer_factory=None,
    batch_size: int = 16,
    num_workers: int = 0,
    max_pixels: int = 64_000_000,
    shard_rows: int = 256,
    compile: bool | str = False,
    compile_min_images: int = 2000,
) -> FeatureTable:
    """Return the concatenated feature matrix of ``items`` (computing and caching only the missing rows).

    ``trainer_factory(callbacks) -> L.Trainer`` builds the trainer (from the ``trainer`` config group); by default a
    single-process CPU trainer. ``compile`` (true | false | "auto": when at least ``compile_min_images`` images are
    missing) runs the handcrafted families through ``torch.compile``.
    """
    if not families:
        raise ValueError("no feature family selected: choose feature=..., encoder=... or ae=...")
    stores = {
        f.name: FeatureStore(
            family_folder(cache_root, f.name, f.config_for_cache(), patches.as_dict()),
            names=pooled_names(f),
            meta={"family": f.config_for_cache(), "patches": patches.as_dict()},
        )
        for f in families
    }
    failures = FailureStore(Path(cache_root) / f"decode-{config_hash({'max_pixels': max_pixels})}")
    known_failed = failures.load()
    unique: dict[str, ExtractionItem] = {}
    for item in items:
        unique.setdefault(item.key, item)
    todo = [it for key, it in unique.items() if key not in known_failed and any(key not in s for s in stores.values())]
    needed = [f for f in families if stores[f.name].missing([it.key for it in todo])]
    writer = CacheWriter({f.name: stores[f.name] for f in needed}, failures, shard_rows)
    if todo:
        tune_malloc()
        ensure_writable(cache_root)  # fail before computing anything, not when the first shard is written
        log.info("extracting %d of %d images (%s); the rest come from %s", len(todo), len(unique),
                 ", ".join(f.name for f in needed), cache_root)
        trainer = (trainer_factory or _default_trainer)([writer])
        datamodule = PatchDataModule(todo, patches, batch_size, num_workers, max_pixels)
        compiled = should_compile(compile, len(todo), needed, compile_min_images)
        trainer.predict(FeatureExtractor(needed, compiled), datamodule=datamodule, return_predictions=False)
        for store in stores.values():
            store.refresh()
        known_failed = failures.load()
    ok_keys = [it.key for it in items if all(it.key in s for s in stores.values())]
    ok = set(ok_keys)
    failed = {it.key: known_failed.get(it.key, "not extracted (see log)") for it in items if it.key not in ok}
    X = np.concatenate([stores[f.name].get(ok_keys) for f in families], axis=1) if ok_keys else np.zeros((0, 0), np.float32)
    names = [n for f in families for n in pooled_names(f)]
    return FeatureTable(ok_keys, X.astype(np.float32, copy=False), names, failed, writer.computed)


def _default_trainer(callbacks) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=callbacks, enable_model_summary=False)
