"""Aligned reconstructions: the same region as the real, saved the way the real was saved, cached and resumable."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, JpegImagePlugin

from negate.data.records import ImageRecord
from negate.data.encode import save_like
from negate.finetune.aligned import aligned_reconstructions, choose_region
from negate.models.taef2 import load_taef2


def _jpeg_bytes(arr: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def test_region_is_block_aligned_and_inside():
    for seed in range(20):
        x, y, size = choose_region(300, 517, 256, seed)
        assert x % 16 == 0 and y % 16 == 0 and size == 256 and x + size <= 517 and y + size <= 300
    x, y, size = choose_region(100, 90, 256, 0)  # smaller than the region: the short side floored to 16
    assert size == 80 and x == 0 and y in (0, 16)
    assert choose_region(40, 400, 256, 0) is None


def test_save_like_keeps_quantisation_tables_and_subsampling():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for quality, subsampling in ((63, 2), (91, 0)):
        original = _jpeg_bytes(arr, quality=quality, subsampling=subsampling)
        data, ext = save_like(Image.fromarray(arr[::-1].copy()), original)
        assert ext == "jpg"
        with Image.open(io.BytesIO(original)) as a, Image.open(io.BytesIO(data)) as b:
            assert a.quantization == b.quantization
            assert JpegImagePlugin.get_sampling(b) == subsampling
    png = io.BytesIO()
    Image.fromarray(arr).save(png, format="PNG")
    assert save_like(Image.fromarray(arr), png.getvalue())[1] == "png"


def test_reconstructions_are_cached_and_resume(tmp_path, image_folder):
    reals = sorted((image_folder / "real").rglob("*.jpg"))[:3]
    records = [ImageRecord(str(p), 0) for p in reals] + [ImageRecord(str(next((image_folder / "fake").rglob("*.png"))), 1)]
    ae = load_taef2(pretrained=False)
    first = aligned_reconstructions(records, ae, tmp_path, region=64)
    assert sorted(first) == sorted(str(p) for p in reals)  # fakes get none
    for crops in first.values():
        (crop,) = crops
        with Image.open(crop.path) as recon, Image.open(crop.real_crop) as real, Image.open(crop.real_path) as src:
            assert recon.size == real.size == (crop.size, crop.size) and recon.format == "JPEG"
            assert recon.quantization == src.quantization == real.quantization
        decoded = np.asarray(Image.open(crop.real_path).convert("RGB"))[crop.y:crop.y + 64, crop.x:crop.x + 64]
        assert np.abs(np.asarray(Image.open(crop.real_crop)).astype(int) - decoded).mean() < 3
    mtimes = {c.path: os.stat(c.path).st_mtime_ns for v in first.values() for c in v}
    second = aligned_reconstructions(records, ae, tmp_path, region=64)
    assert second == first
    assert all(os.stat(p).st_mtime_ns == t for p, t in mtimes.items())  # nothing recomputed


def test_feature_recipes_get_each_real_region_beside_its_reconstruction(tmp_path, image_folder):
    from omegaconf import OmegaConf

    from negate.recipe import aligned_training_records

    reals = [ImageRecord(str(p), 0, "real", "camera1") for p in sorted((image_folder / "real").rglob("*.jpg"))[:2]]
    fake = ImageRecord(str(next((image_folder / "fake").rglob("*.png"))), 1, "gen", "gen1")
    cfg = OmegaConf.create({"aligned": {"ae": "taef2", "pretrained": False, "region": 64, "per_real": 1},
                            "paths": {"cache_dir": str(tmp_path)}, "data": {"max_pixels": 10**8}})
    extra = aligned_training_records(cfg, [*reals, fake])
    assert [r.label for r in extra] == [0, 1, 0, 1]
    assert {r.source for r in extra} == {"camera1"}  # a pair stays in its real's group
    for real_crop, recon in zip(extra[::2], extra[1::2]):
        with Image.open(real_crop.path) as a, Image.open(recon.path) as b:
            assert a.size == b.size == (64, 64) and a.format == b.format == "JPEG"
    assert aligned_training_records(OmegaConf.create({"aligned": None}), reals) == []
