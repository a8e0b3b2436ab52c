from __future__ import annotations

import numpy as np

from negate.cache import FailureStore, FeatureStore, family_folder


def test_rows_round_trip_and_survive_a_new_reader(tmp_path):
    store = FeatureStore(tmp_path / "fam", names=["a", "b"])
    store.append(["k1", "k2"], np.array([[1, 2], [3, 4]], np.float32))
    store.append(["k3"], np.array([[5, 6]], np.float32))
    fresh = FeatureStore(tmp_path / "fam")
    assert fresh.missing(["k1", "k3", "k9"]) == ["k9"]
    np.testing.assert_array_equal(fresh.get(["k3", "k1"]), [[5, 6], [1, 2]])
    assert len(list((tmp_path / "fam").glob("shard-*.npz"))) == 2


def test_duplicate_rows_from_racing_writers_are_read_once(tmp_path):
    a, b = FeatureStore(tmp_path / "fam", ["x"]), FeatureStore(tmp_path / "fam", ["x"])
    a.append(["k"], np.array([[1.0]]))
    b.append(["k"], np.array([[1.0]]))
    fresh = FeatureStore(tmp_path / "fam")
    assert fresh.get(["k"]).shape == (1, 1)


def test_partial_and_corrupt_shards_are_ignored(tmp_path):
    store = FeatureStore(tmp_path / "fam", ["x"])
    store.append(["good"], np.array([[1.0]]))
    (tmp_path / "fam" / ".shard-1-abc.tmp.npz").write_bytes(b"half a shard")  # a killed writer's leftover
    (tmp_path / "fam" / "shard-2-def.npz").write_bytes(b"PK\x03\x04 truncated")
    fresh = FeatureStore(tmp_path / "fam")
    assert fresh.missing(["good", "other"]) == ["other"]


def test_family_folder_depends_on_family_and_patch_config(tmp_path):
    base = family_folder(tmp_path, "spectral", {"n_bins": 32}, {"size": 256})
    assert base == family_folder(tmp_path, "spectral", {"n_bins": 32}, {"size": 256})
    assert base != family_folder(tmp_path, "spectral", {"n_bins": 16}, {"size": 256})
    assert base != family_folder(tmp_path, "spectral", {"n_bins": 32}, {"size": 128})


def test_failures_are_remembered(tmp_path):
    FailureStore(tmp_path).append([("k1", "truncated JPEG")])
    assert FailureStore(tmp_path).load() == {"k1": "truncated JPEG"}
