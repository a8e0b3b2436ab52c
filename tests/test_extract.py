"""The extraction engine: Lightning predict over patch batches, the cache, failures, and DDP."""

from __future__ import annotations

import shutil

import numpy as np
import torch
from hydra.utils import instantiate

from negate.data.dataset import ExtractionItem, PatchConfig, make_key
from negate.data.decode import read_file_bytes, sha256_bytes
from negate.data.records import load_folder
from negate.extract import FeatureExtractor, extract_features, pool_patches
from negate.features import create_feature

PATCHES = PatchConfig(size=64, count=2, selection="grid")


def items_of(folder, view=""):
    records, _ = load_folder(folder)
    return [ExtractionItem(r.path, make_key(sha256_bytes(read_file_bytes(r.path)), view), view) for r in records]


def families():
    return [create_feature("spectral"), create_feature("laplacian")]


def test_pooling_mean_and_max():
    rows = torch.tensor([[[1.0, 5.0], [3.0, 1.0]]])
    assert pool_patches(rows, ("mean", "max")).tolist() == [[2.0, 3.0, 3.0, 5.0]]


def test_extractor_output_matches_family_directly():
    fam = create_feature("spectral")
    patches = torch.rand(2, 3, 3, 64, 64)
    out = FeatureExtractor([fam])(patches)["spectral"]
    per_patch = fam(patches.flatten(0, 1)).reshape(2, 3, -1)
    torch.testing.assert_close(out, pool_patches(per_patch, fam.pool))


def test_second_run_computes_nothing_and_returns_same_rows(image_folder, tmp_path):
    items = items_of(image_folder)
    first = extract_features(items, families(), PATCHES, tmp_path / "cache")
    assert first.computed == len(items) and first.X.shape[0] == len(items) and not first.failed
    second = extract_features(items, families(), PATCHES, tmp_path / "cache")
    assert second.computed == 0
    np.testing.assert_array_equal(first.X, second.X)
    assert second.names == first.names and len(second.names) == second.X.shape[1]


def test_a_new_family_reuses_the_cached_ones(image_folder, tmp_path):
    items = items_of(image_folder)[:6]
    extract_features(items, [create_feature("spectral")], PATCHES, tmp_path / "cache")
    both = extract_features(items, families(), PATCHES, tmp_path / "cache")
    assert both.computed == 6  # laplacian computed; spectral rows read back, not recomputed
    spectral_dirs = list((tmp_path / "cache").glob("spectral-*"))
    assert len(spectral_dirs) == 1 and len(list(spectral_dirs[0].glob("shard-*.npz"))) == 1


def test_corrupt_image_is_reported_not_fatal(image_folder, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(image_folder, folder)
    bad = folder / "fake" / "fake_src0" / "broken.png"
    bad.write_bytes((folder / "fake" / "fake_src0" / "fake_000.png").read_bytes()[:200])
    items = items_of(folder)
    table = extract_features(items, families(), PATCHES, tmp_path / "cache")
    assert len(table.keys) == len(items) - 1
    (reason,) = table.failed.values()
    assert "\n" not in reason and reason


def test_ddp_two_cpu_processes_give_the_same_features(image_folder, tmp_path):
    items = items_of(image_folder)
    single = extract_features(items, families(), PATCHES, tmp_path / "single")
    trainer_cfg = {"_target_": "lightning.Trainer", "accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn",
                   "logger": False, "enable_model_summary": False, "enable_progress_bar": False}
    ddp = extract_features(items, families(), PATCHES, tmp_path / "ddp", batch_size=4,
                           trainer_factory=lambda callbacks: instantiate(trainer_cfg, callbacks=callbacks))
    assert ddp.keys == single.keys
    np.testing.assert_allclose(ddp.X, single.X, rtol=1e-5, atol=1e-6)
    shards = list((tmp_path / "ddp").glob("spectral-*/shard-*.npz"))
    assert len(shards) >= 2  # each process wrote its own
    rows = sum(len(np.load(s)["keys"]) for s in shards)
    assert rows == len(items)  # every image once, none twice
