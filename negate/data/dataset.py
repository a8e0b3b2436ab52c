"""The torch Dataset behind extraction: one item = one (image file, view) pair, decoded into patches.

A *view* is a perturbation spec from :mod:`negate.data.perturb` applied after decoding ("" = the file as it is;
"jpeg:75+reencode:jpeg90" = an attack followed by the format-neutral re-encode). Items that cannot be read or
decoded come back as ``{"key", "error"}`` so one bad file never stops a run; :func:`collate_items` sorts them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from negate.data.decode import DecodeError, decode_image, read_file_bytes
from negate.data.patches import extract_patches, seed_from_key


@dataclass(frozen=True)
class PatchConfig:
    size: int = 256
    count: int = 4
    selection: str = "grid"
    policy: str = "native"

    def __post_init__(self) -> None:
        # the DCT family needs whole 8x8 blocks, NPR even sides, the 4-level wavelet 16 pixels
        if self.size < 16 or self.size % 8:
            raise ValueError(f"patches.size must be a multiple of 8 and at least 16, got {self.size}")
        if self.count < 1:
            raise ValueError(f"patches.count must be at least 1, got {self.count}")

    def as_dict(self) -> dict:
        return {"size": self.size, "count": self.count, "selection": self.selection, "policy": self.policy}


@dataclass(frozen=True)
class ExtractionItem:
    path: str
    key: str  # "<sha256 of file bytes>|<view>"
    view: str = ""


def make_key(sha256: str, view: str) -> str:
    return f"{sha256}|{view}"


class PatchDataset(Dataset):
    def __init__(self, items: list[ExtractionItem], patches: PatchConfig, max_pixels: int = 64_000_000):
        self.items = list(items)
        self.patches = patches
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        try:
            image = decode_image(read_file_bytes(item.path), max_pixels=self.max_pixels)
            if item.view:
                from negate.data.perturb import apply_view

                image = apply_view(image, item.view)
            pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
            p = self.patches
            patches = extract_patches(pixels, p.size, p.count, p.selection, p.policy, seed=seed_from_key(item.key))
        except DecodeError as err:
            return {"key": item.key, "error": str(err)}
        except (OSError, ValueError, RuntimeError) as err:  # a perturbation or patching failure on a decodable file
            return {"key": item.key, "error": f"{type(err).__name__}: {err}".splitlines()[0]}
        return {"key": item.key, "patches": patches}


def collate_items(batch: list[dict]) -> dict:
    """Stack decodable items into ``patches`` (B, P, 3, S, S) uint8; list the rest in ``failed``."""
    good = [b for b in batch if "patches" in b]
    return {
        "keys": [b["key"] for b in good],
        "patches": torch.stack([b["patches"] for b in good]) if good else None,
        "failed": [(b["key"], b["error"]) for b in batch if "error" in b],
    }
