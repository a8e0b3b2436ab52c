"""The learned detector: label-independent patch augmentation, aligned pairs, a real Lightning fit, the weights as
an encoder, and the whole `negate train experiment=finetuned` -> `negate infer` round trip on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from negate.data.records import ImageRecord, load_manifest
from negate.finetune.aligned import AlignedCrop
from negate.finetune.data import (DecodedImages, PatchAugment, PatchEvalSet, PatchTrainSet, collate_patches,
                                  local_infill)
from negate.finetune.fit import fit_detector, fit_key, finetuned_encoder_cfg
from negate.finetune.module import balanced_bce
from negate.models.encoders import create_encoder

NO_AUG = {"p_flip": 0, "p_downscale": 0, "p_blur": 0, "p_jpeg": 0, "p_webp": 0}
TINY = {"encoder": "effnet_lite0", "pretrained": False, "patch": 64, "batch_size": 8, "max_epochs": 2, "patience": 0,
        "num_workers": 0, "aligned": None, "trainer": {"accelerator": "cpu", "devices": 1}}


def test_augment_is_validated_and_never_sees_the_label():
    with pytest.raises(ValueError, match="p_jpeg"):
        PatchAugment(p_jpeg=1.5)
    with pytest.raises(ValueError, match="unknown finetune augment keys"):
        PatchAugment.from_dict({"p_jpg": 0.5})
    aug = PatchAugment()
    draws = [aug.draw(np.random.default_rng(s)) for s in range(400)]
    assert 0.4 < np.mean([d["codec"] == "jpeg" for d in draws]) < 0.6
    assert all(0.5 <= d["scale"] <= 1 for d in draws)


def _image(path, arr, fmt="PNG"):
    Image.fromarray(arr).save(path, format=fmt)
    return str(path)


def test_pairs_share_position_and_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
    real = _image(tmp_path / "real.png", arr)
    region = arr[32:160, 48:176]
    recon = _image(tmp_path / "recon.png", region)  # an "identity autoencoder": the pair must come out equal
    images = DecodedImages([ImageRecord(real, 0)])
    aligned = {real: [AlignedCrop(real, 48, 32, 128, recon, recon)]}
    for aug in (PatchAugment(**NO_AUG), PatchAugment(p_flip=1, p_jpeg=1, p_downscale=1, p_blur=1)):
        ds = PatchTrainSet(images, 64, aug, aligned)
        for epoch in range(3):
            ds.set_epoch(epoch)
            x, y = ds[0]
            assert x.shape == (2, 3, 64, 64) and y.tolist() == [0.0, 1.0]
            assert torch.equal(x[0], x[1])


def test_local_infill_keeps_the_photo_outside_one_rectangle():
    rng = np.random.default_rng(3)
    real, fake = np.zeros((100, 120, 3), np.uint8), np.full((100, 120, 3), 200, np.uint8)
    for seed in range(20):
        out = local_infill(real, fake, np.random.default_rng(seed), feather=(0.0, 0.0))
        changed = np.argwhere(out[..., 0] > 0)
        (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
        assert np.all(out[y0:y1 + 1, x0:x1 + 1] == 200) and len(changed) == (y1 - y0 + 1) * (x1 - x0 + 1)
        assert 0.3 * 100 - 1 <= y1 - y0 + 1 <= 0.8 * 100 + 1 and 0.3 * 120 - 1 <= x1 - x0 + 1 <= 0.8 * 120 + 1
    soft = local_infill(real, fake, rng, feather=(2.0, 2.0))
    assert len(np.unique(soft)) > 2  # a feathered seam has intermediate values
    with pytest.raises(ValueError, match="aligned.local"):
        PatchTrainSet(DecodedImages([]), 32, local=1.5)


def test_local_pairs_are_the_real_with_part_of_the_reconstruction(tmp_path):
    arr = np.zeros((128, 128, 3), np.uint8)
    real = _image(tmp_path / "real.png", arr)
    recon = _image(tmp_path / "recon.png", np.full((128, 128, 3), 255, np.uint8))
    aligned = {real: [AlignedCrop(real, 0, 0, 128, recon, recon)]}
    ds = PatchTrainSet(DecodedImages([ImageRecord(real, 0)]), 64, PatchAugment(**NO_AUG), aligned, local=1.0)
    for epoch in range(5):
        ds.set_epoch(epoch)
        x, y = ds[0]
        assert y.tolist() == [0.0, 1.0] and x[0].max() == 0
        share = float((x[1] > 0.5).float().mean())
        assert 0.05 < share < 0.7  # part of the patch is the reconstruction, the rest the photo


def test_small_images_are_padded_not_upsampled_and_eval_is_fixed(tmp_path):
    small = _image(tmp_path / "s.png", np.full((20, 30, 3), 7, np.uint8))
    big = _image(tmp_path / "b.jpg", np.random.default_rng(1).integers(0, 255, (90, 90, 3), dtype=np.uint8), "JPEG")
    images = DecodedImages([ImageRecord(small, 1), ImageRecord(big, 0), ImageRecord(str(tmp_path / "gone.png"), 0)])
    assert len(images) == 2 and str(tmp_path / "gone.png") in images.failed
    ds = PatchTrainSet(images, 64, PatchAugment(**NO_AUG))
    x, y = collate_patches([ds[0], ds[1]])
    assert x.shape == (2, 3, 64, 64) and y.tolist() == [1.0, 0.0]
    assert torch.allclose(x[0], torch.full_like(x[0], 7 / 255))  # reflect padding of a flat image stays flat
    ev = PatchEvalSet(images, 64, count=4)
    x, y = ev[1]
    assert x.shape == (4, 3, 64, 64) and y.tolist() == [0.0] and torch.equal(x, ev[1][0])  # fixed grid
    assert not torch.equal(x[0], x[3])  # corners of the 90x90 image, not one patch repeated


def test_several_patches_per_image_per_epoch(tmp_path):
    rng = np.random.default_rng(2)
    paths = [_image(tmp_path / f"{i}.png", rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)) for i in range(3)]
    images = DecodedImages([ImageRecord(p, i % 2) for i, p in enumerate(paths)])
    ds = PatchTrainSet(images, 32, PatchAugment(**NO_AUG), patches_per_image=4)
    assert len(ds) == 12
    items = [ds[i] for i in range(12)]
    assert [int(y[0]) for _, y in items] == [0, 1, 0] * 4  # item i is image i % 3, with its own label
    assert not torch.equal(items[0][0], items[3][0])  # another random patch of the same image
    with pytest.raises(ValueError, match="patches_per_image"):
        PatchTrainSet(images, 32, patches_per_image=0)


def test_balanced_loss_weighs_classes_equally():
    logits = torch.tensor([0.0, 0.0, 0.0, 5.0])
    labels = torch.tensor([0.0, 0.0, 0.0, 1.0])
    per = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    assert torch.isclose(balanced_bce(logits, labels), (per[:3].mean() + per[3]) / 2)


def test_fit_writes_weights_that_run_as_an_encoder(tmp_path, manifest):
    records = load_manifest(manifest)
    train = [r for r in records if not r.source.endswith("src2")]
    val = [r for r in records if r.source.endswith("src2")]
    weights = fit_detector(train, val, TINY, tmp_path / "ft", cache_dir=tmp_path / "cache")
    with safe_open(str(weights), framework="pt") as fh:
        meta = fh.metadata()
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}
    assert meta["arch"] == "tf_efficientnet_lite0" and json.loads(meta["patch"]) == 64
    assert json.loads(meta["train_images"]) == len(train) and torch.float16 in dtypes
    enc = create_encoder(finetuned_encoder_cfg(weights))
    x = torch.rand(3, 3, 64, 64)
    out = enc(x)
    assert out.shape == (3, 1) and enc.native and enc.identity()["weights"].startswith("sha256:")
    assert enc(torch.rand(2, 3, 96, 96)).shape == (2, 1)  # native: any patch size, never resized
    pooled = create_encoder({**finetuned_encoder_cfg(weights), "pool": "mean"})
    assert pooled(x).shape == (3, 1280)

    # the feature cache keys on the weights' digest (encoder identity), not on the folder they lie in
    from negate.features.embedding import EmbeddingFamily

    (tmp_path / "copy").mkdir()
    copy = tmp_path / "copy" / weights.name
    copy.write_bytes(weights.read_bytes())
    assert EmbeddingFamily(finetuned_encoder_cfg(weights)).config_for_cache() == \
        EmbeddingFamily(finetuned_encoder_cfg(copy)).config_for_cache()

    # the same images, config and seed reuse the cached weights; another seed or other images fit again
    key = fit_key(train, val, TINY, 64_000_000, 0)
    assert (tmp_path / "cache" / "finetune" / key / "detector.safetensors").read_bytes() == weights.read_bytes()
    again = fit_detector(train, val, TINY, tmp_path / "again", cache_dir=tmp_path / "cache")
    assert again.read_bytes() == weights.read_bytes() and again.parent.name == "again"
    assert not (tmp_path / "again" / "checkpoints").exists()  # nothing was trained
    assert len({key, fit_key(train, val, TINY, 64_000_000, 1), fit_key(train[1:], val, TINY, 64_000_000, 0),
                fit_key(train, val, {**TINY, "patch": 32}, 64_000_000, 0),
                fit_key(train, val, {**TINY, "patches_per_image": 2}, 64_000_000, 0)}) == 5
    # a key added later, at its neutral value, keeps the weights cached before it existed
    assert fit_key(train, val, {**TINY, "patches_per_image": 1}, 64_000_000, 0) == key
    # and the inference grid, batch size and pooling do not change the weights, so they do not change the key
    assert fit_key(train, val, {**TINY, "grid": 64, "infer_batch_size": 8, "pool": "mean"}, 64_000_000, 0) == key


def test_soup_averages_cached_fits_of_consecutive_seeds(tmp_path, manifest):
    from safetensors.torch import load_file

    records = load_manifest(manifest)
    train = [r for r in records if not r.source.endswith("src2")]
    val = [r for r in records if r.source.endswith("src2")]
    cache = tmp_path / "cache"
    first = fit_detector(train, val, TINY, tmp_path / "one", cache_dir=cache, seed=3)
    soup = fit_detector(train, val, {**TINY, "soup": 2}, tmp_path / "soup", cache_dir=cache, seed=3)
    # ingredient 0 is the soup=1 fit of the same seed, taken from the cache; ingredient 1 is seed 4
    assert (tmp_path / "soup" / "ingredient0" / "detector.safetensors").read_bytes() == first.read_bytes()
    assert not (tmp_path / "soup" / "ingredient0" / "checkpoints").exists()
    a, b = load_file(str(first)), load_file(str(tmp_path / "soup" / "ingredient1" / "detector.safetensors"))
    mixed = load_file(str(soup))
    assert set(mixed) == set(a) and any(not torch.equal(a[k], b[k]) for k in a)
    for k, v in mixed.items():
        if v.is_floating_point():
            assert torch.allclose(v.float(), ((a[k].float() + b[k].float()) / 2).half().float())
        else:
            assert torch.equal(v, a[k])
    with safe_open(str(soup), framework="pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["soup"]) == 2 and len(json.loads(meta["ingredient_val_auroc"])) == 2
    assert 0 <= json.loads(meta["best_val_auroc"]) <= 1
    assert create_encoder(finetuned_encoder_cfg(soup))(torch.rand(2, 3, 64, 64)).shape == (2, 1)
    # soup=1 is the plain fit (its cache key unchanged); the soup has its own key and is cached whole
    assert fit_key(train, val, {**TINY, "soup": 1}, 64_000_000, 3) == fit_key(train, val, TINY, 64_000_000, 3)
    key = fit_key(train, val, {**TINY, "soup": 2}, 64_000_000, 3)
    assert (cache / "finetune" / key / "detector.safetensors").read_bytes() == soup.read_bytes()


def test_fit_needs_both_classes(tmp_path, manifest):
    records = load_manifest(manifest)
    with pytest.raises(ValueError, match="both classes"):
        fit_detector([r for r in records if r.label == 1], records, TINY, tmp_path)


def test_train_finetuned_then_infer_through_the_model_folder(tmp_path, image_folder):
    """`experiment=finetuned`: Trainer.fit, aligned pairs, the weights inside the checksummed model folder, and
    inference that loads them from there (any copy of the folder works; a changed weights file is refused)."""
    import shutil

    from hydra import compose, initialize_config_dir

    from negate.model_folder import load_checked_model
    from negate.model_folder import ModelFolderError
    from negate.paths import CONFIG_DIR
    from negate.pipeline import register_resolvers
    from negate.train import train

    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "data=folder", f"data.path={image_folder}", f"paths.output_dir={tmp_path}",
            f"paths.models_dir={tmp_path}/models", "experiment=finetuned", "finetune.pretrained=false",
            "finetune.patch=64", "finetune.grid=4", "finetune.max_epochs=1", "finetune.num_workers=0",
            "finetune.batch_size=8", "finetune.aligned.pretrained=false", "finetune.aligned.region=64",
            "finetune.trainer.accelerator=cpu", "eval.n_boot=10", "split.group_by=null"])
    metrics = train(cfg)
    folder = tmp_path / "moved"
    shutil.copytree(metrics["model_dir"], folder)
    assert (folder / "detector.safetensors").is_file()
    assert "detector.safetensors" in (folder / "checksums.sha256").read_text()
    card = (folder / "MODEL_CARD.md").read_text()
    assert "Fine-tuned detector" in card and "aligned_pairs" in card
    model, families = load_checked_model(str(folder), [])
    assert model.pipeline["encoder"]["weights_dir"] == "@model"
    assert families[0].model.identity()["weights"].startswith("sha256:")
    with open(folder / "detector.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\0\0\0\1")
    with pytest.raises(ModelFolderError, match="detector.safetensors"):
        load_checked_model(str(folder), [])


def test_loader_workers_auto_follows_the_machine(monkeypatch):
    import negate.finetune.fit as fit

    assert fit.loader_workers(3) == 3 and fit.loader_workers("2", "gpu") == 2
    monkeypatch.setattr(fit.torch.cuda, "device_count", lambda: 0)
    assert fit.loader_workers("auto") == 1  # CPU: the training process needs the other cores
    monkeypatch.setattr(fit.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(fit.os, "cpu_count", lambda: 16)
    assert fit.loader_workers("auto") == 7 and fit.loader_workers("auto", "cpu") == 1
    monkeypatch.setattr(fit.torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(fit.os, "cpu_count", lambda: 64)
    assert fit.loader_workers("AUTO", "cuda") == 8
