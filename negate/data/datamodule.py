"""LightningDataModule that streams (file, view) items as patch batches for feature extraction."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from negate.data.dataset import ExtractionItem, PatchConfig, PatchDataset, collate_items


class PatchDataModule(L.LightningDataModule):
    def __init__(
        self,
        items: list[ExtractionItem],
        patches: PatchConfig = PatchConfig(),
        batch_size: int = 16,
        num_workers: int = 0,
        max_pixels: int = 64_000_000,
        pin_memory: bool = False,
    ):
        super().__init__()
        self.items = items
        self.patches = patches
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_pixels = max_pixels
        self.pin_memory = pin_memory

    def predict_dataloader(self) -> DataLoader:
        dataset = PatchDataset(self.items, self.patches, self.max_pixels)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_items,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
