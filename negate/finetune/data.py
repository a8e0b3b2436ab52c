"""Training data for the learned detector: decoded once, cut into native-resolution random patches, augmented the
same way whatever the class.

* :class:`DecodedImages` decodes every image once (uint8, in memory; DataLoader workers share it copy-on-write),
  so epochs never re-decode. Unreadable files are reported and left out.
* :class:`PatchTrainSet` draws ``patches_per_image`` random ``patch`` x ``patch`` crops per image and epoch
  (reflect-padded when smaller; more optimisation steps per decoded image), then
  :class:`PatchAugment` (flip, downscale, blur, JPEG or WebP re-encoding) with parameters drawn independently of
  the label, so neither class owns a format, a size or a compression history. A real with aligned reconstructions
  yields a *pair*: the real crop and the reconstruction's crop at the same position, through the same augmentation.
  With ``local`` > 0 that share of the pairs' fakes are *local in-fills* instead: the real crop with only a random
  soft-edged rectangle taken from the reconstruction (:func:`local_infill`; B-Free's local inpainting, CVPR 2025),
  the shape of an object removal or a try-on, where most of the image is the untouched photo.
* :class:`PatchEvalSet`: the inference grid of patches, no augmentation (validation, early stopping).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, fields

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset

from negate.data.decode import DecodeError, decode_image
from negate.data.patches import patch_origins
from negate.data.records import ImageRecord
from negate.finetune.aligned import AlignedCrop

log = logging.getLogger(__name__)


_DECODED: dict[tuple[str, int], np.ndarray] = {}  # per process: protocol folds reuse what earlier folds decoded


def _decoded(path: str, max_pixels: int) -> np.ndarray:
    key = (path, max_pixels)
    if key not in _DECODED:
        _DECODED[key] = np.asarray(decode_image(path, max_pixels))
    return _DECODED[key]


class DecodedImages:
    """``records`` decoded to RGB uint8 arrays; ``failed`` maps unreadable paths to reasons."""

    def __init__(self, records: list[ImageRecord], max_pixels: int = 64_000_000):
        self.records: list[ImageRecord] = []
        self.arrays: list[np.ndarray] = []
        self.failed: dict[str, str] = {}
        for r in records:
            try:
                self.arrays.append(_decoded(r.path, max_pixels))
                self.records.append(r)
            except DecodeError as err:
                self.failed[r.path] = str(err)
                log.warning("skipping %s: %s", r.path, err)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)


@dataclass(frozen=True)
class PatchAugment:
    """Independent draws, applied in the order flip -> downscale -> blur -> one lossy codec."""

    p_flip: float = 0.5
    p_downscale: float = 0.3
    downscale: tuple[float, float] = (0.5, 1.0)
    p_blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 100)
    p_webp: float = 0.1
    webp_quality: tuple[int, int] = (60, 100)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("p_") and not 0 <= v <= 1:
                raise ValueError(f"augment.{f.name} must be in [0, 1], got {v}")
            if not f.name.startswith("p_") and not (len(v) == 2 and v[0] <= v[1]):
                raise ValueError(f"augment.{f.name} must be (low, high) with low <= high, got {v}")
        if not 0 < self.downscale[0] <= 1:
            raise ValueError(f"augment.downscale must lie in (0, 1], got {self.downscale}")

    @classmethod
    def from_dict(cls, cfg: dict | None) -> "PatchAugment":
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"unknown finetune augment keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in cfg.items()})

    def draw(self, rng: np.random.Generator) -> dict:
        """One set of parameters (shared by the two halves of an aligned pair)."""
        coins = rng.random(5)
        return {
            "flip": coins[0] < self.p_flip,
            "scale": float(rng.uniform(*self.downscale)) if coins[1] < self.p_downscale else 1.0,
            "blur": float(rng.uniform(*self.blur_sigma)) if coins[2] < self.p_blur else 0.0,
            "codec": "jpeg" if coins[3] < self.p_jpeg else ("webp" if coins[4] < self.p_webp else ""),
            "quality": int(rng.integers(*(self.jpeg_quality if coins[3] < self.p_jpeg else self.webp_quality),
                                        endpoint=True)),
        }


def _apply(img: Image.Image, params: dict, patch: int | None) -> Image.Image:
    """Apply one parameter draw; ``patch`` set: the crop (cut larger by 1/scale) is resized to ``patch`` first."""
    if params["flip"]:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if patch is not None and img.size != (patch, patch):
        img = img.resize((patch, patch), Image.Resampling.BICUBIC, reducing_gap=None)
    if params["blur"] > 0:
        img = img.filter(ImageFilter.GaussianBlur(params["blur"]))
    if params["codec"]:
        buf = io.BytesIO()
        img.save(buf, format="JPEG" if params["codec"] == "jpeg" else "WEBP", quality=params["quality"])
        buf.seek(0)
        with Image.open(buf) as decoded:
            img = decoded.convert("RGB")
    return img


def _pad(arr: np.ndarray, size: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if h >= size and w >= size:
        return arr
    ph, pw = max(0, size - h), max(0, size - w)
    mode = "reflect" if ph < h and pw < w else "symmetric"
    return np.pad(arr, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode=mode)


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)


def local_infill(real: np.ndarray, fake: np.ndarray, rng: np.random.Generator,
                 share: tuple[float, float] = (0.3, 0.8), feather: tuple[float, float] = (0.0, 2.0)) -> np.ndarray:
    """``real`` with a random rectangle (each side ``share`` of the crop's) blended in from ``fake`` (same shape)
    through a mask blurred by a Gaussian of ``feather`` px, so the seam is not always a hard edge."""
    h, w = real.shape[:2]
    bh, bw = (max(1, int(round(n * rng.uniform(*share)))) for n in (h, w))
    y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    mask = np.zeros((h, w), np.uint8)
    mask[y:y + bh, x:x + bw] = 255
    sigma = float(rng.uniform(*feather))
    if sigma > 0:
        mask = np.asarray(Image.fromarray(mask).filter(ImageFilter.GaussianBlur(sigma)))
    alpha = mask[..., None].astype(np.float32) / 255.0
    return np.clip(fake * alpha + real * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)


class PatchTrainSet(Dataset):
    """Item ``i``: ``(patches (k, 3, P, P) float in [0, 1], labels (k,))`` of image ``i % len(images)``, with k = 1,
    or 2 for a real paired with its aligned reconstruction (a local in-fill of it with probability ``local``). An
    epoch holds ``patches_per_image`` items per image. Random positions and augmentation come from ``seed``, the
    epoch and ``i``."""

    def __init__(self, images: DecodedImages, patch: int, augment: PatchAugment | None = None,
                 aligned: dict[str, list[AlignedCrop]] | None = None, seed: int = 0, patches_per_image: int = 1,
                 local: float = 0.0):
        if int(patches_per_image) < 1:
            raise ValueError(f"patches_per_image must be >= 1, got {patches_per_image}")
        if not 0 <= float(local) <= 1:
            raise ValueError(f"aligned.local must be in [0, 1], got {local}")
        self.local = float(local)
        self.images = images
        self.patches_per_image = int(patches_per_image)
        self.patch = int(patch)
        self.augment = augment or PatchAugment()
        self.seed = int(seed)
        self.epoch = 0
        self.aligned: dict[int, list[tuple[AlignedCrop, np.ndarray]]] = {}
        for i, r in enumerate(images.records):
            for crop in (aligned or {}).get(r.path, []):
                if crop.size < self.patch:  # a pair is cut at native size, never upsampled
                    continue
                try:
                    recon = np.asarray(decode_image(crop.path))
                except DecodeError as err:
                    log.warning("aligned reconstruction %s unreadable: %s", crop.path, err)
                    continue
                self.aligned.setdefault(i, []).append((crop, recon))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images) * self.patches_per_image

    @property
    def n_pairs(self) -> int:
        return len(self.aligned)

    def _cut(self, arr: np.ndarray, x: int, y: int, side: int) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(arr[y:y + side, x:x + side]))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        params = self.augment.draw(rng)
        i = i % len(self.images)
        label = int(self.images.records[i].label)
        side = min(int(round(self.patch / params["scale"])), 4 * self.patch)
        pairs = self.aligned.get(i)
        if pairs:  # cut inside the reconstructed region, the same square from the real and the reconstruction
            crop, recon = pairs[int(rng.integers(len(pairs)))]
            side = min(side, crop.size)
            ox, oy = (int(rng.integers(0, crop.size - side + 1)) for _ in range(2))
            real = self._cut(self.images.arrays[i], crop.x + ox, crop.y + oy, side)
            fake = self._cut(recon, ox, oy, side)
            if self.local and rng.random() < self.local:
                fake = Image.fromarray(local_infill(np.asarray(real), np.asarray(fake), rng))
            out = [_apply(real, params, self.patch), _apply(fake, params, self.patch)]
            labels = [label, 1]
        else:
            arr = _pad(self.images.arrays[i], self.patch)  # smaller than a patch: reflect-padded, never upsampled
            h, w = arr.shape[:2]
            side = min(side, h, w)
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            out = [_apply(self._cut(arr, x, y, side), params, self.patch)]
            labels = [label]
        return torch.stack([to_tensor(np.asarray(o)) for o in out]), torch.tensor(labels, dtype=torch.float32)


class PatchEvalSet(Dataset):
    """Item ``i``: ``count`` patches on the fixed grid that inference uses (``(count, 3, P, P)``, reflect-padded
    when the image is smaller) and the label; validation averages their logits per image, as inference does."""

    def __init__(self, images: DecodedImages, patch: int, count: int = 4):
        self.images = images
        self.patch = int(patch)
        self.count = int(count)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        arr = _pad(self.images.arrays[i], self.patch)
        origins = patch_origins(*arr.shape[:2], self.patch, self.count, "grid", 0)
        patches = [to_tensor(arr[y:y + self.patch, x:x + self.patch]) for y, x in origins]
        return torch.stack(patches), torch.tensor([float(self.images.records[i].label)])


def collate_patches(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate items of 1 or 2 patches into one batch (pairs stay in the same batch)."""
    return torch.cat([b[0] for b in batch]), torch.cat([b[1] for b in batch])
