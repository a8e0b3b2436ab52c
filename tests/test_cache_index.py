"""The cache index: lookups read only the index and the shards that hold the wanted rows, and give the same answers
as reading every shard would, whatever state the folder is in (old shards without an index, shards added or
removed since the index was written, racing writers, killed writers, a corrupt index)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from negate.cache import CONSOLIDATE_AFTER, INDEX, FailureStore, FeatureStore

WIDTH = 4


def key(i: int) -> str:
    return f"{i:064x}|full"


def row(i: int) -> np.ndarray:
    return np.arange(WIDTH, dtype=np.float32) + 10 * i


def write_shards(folder: Path, first: int, n_shards: int, rows_per_shard: int = 5) -> list[str]:
    """Shards as ``FeatureStore.append`` writes them, holding keys ``first ...``; returns the keys."""
    store = FeatureStore(folder, names=[f"f{j}" for j in range(WIDTH)])
    keys = []
    for s in range(n_shards):
        ids = range(first + s * rows_per_shard, first + (s + 1) * rows_per_shard)
        store.append([key(i) for i in ids], np.stack([row(i) for i in ids]))
        keys += [key(i) for i in ids]
    return keys


def write_old_shard(folder: Path, ids: range, compressed: bool = False) -> None:
    """A shard as the cache wrote them before the index existed (or any ``.npz`` with ``keys`` and ``values``)."""
    folder.mkdir(parents=True, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    save(folder / f"shard-1-{uuid.uuid4().hex[:12]}.npz", keys=np.asarray([key(i) for i in ids]),
         values=np.stack([row(i) for i in ids]))


def assert_reads(folder: Path, present: list[int], absent: list[int]) -> None:
    """A fresh reader finds exactly ``present``, with their rows, in any order, and reports ``absent`` missing."""
    store = FeatureStore(folder)
    wanted = [key(i) for i in [*absent, *present]]
    assert store.missing(wanted) == [key(i) for i in absent]
    assert all(key(i) in store for i in present) and not any(key(i) in store for i in absent)
    shuffled = list(np.random.default_rng(0).permutation(present))
    expected = np.stack([row(i) for i in shuffled]) if present else np.zeros((0, 0), np.float32)
    np.testing.assert_array_equal(store.get([key(i) for i in shuffled]), expected)
    if absent:
        with pytest.raises(KeyError):
            store.get([key(absent[0])])


def indexed_shards(folder: Path) -> list[str]:
    with np.load(folder / INDEX, allow_pickle=False) as data:
        return data["shards"].tolist()


def test_lookups_match_the_rows_written_before_and_after_the_index(tmp_path):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER + 2)
    n = (CONSOLIDATE_AFTER + 2) * 5
    assert not (folder / INDEX).exists(), "writers never write the index"
    assert_reads(folder, present=list(range(n)), absent=[n, n + 1, 10**6])
    assert sorted(indexed_shards(folder)) == sorted(p.name for p in folder.glob("shard-*.npz"))
    write_shards(folder, n, 2)  # newer than the index: read from their own key lists
    assert_reads(folder, present=list(range(n + 10)), absent=[n + 10])


def test_a_reader_that_appended_finds_its_own_rows_without_refresh(tmp_path):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER)
    store = FeatureStore(folder, names=["a"] * WIDTH)
    assert store.missing([key(100)]) == [key(100)]
    store.append([key(100)], row(100)[None])
    assert store.missing([key(100), key(3)]) == []
    np.testing.assert_array_equal(store.get([key(100), key(3)]), [row(100), row(3)])


def test_a_cache_written_before_the_index_is_read(tmp_path):
    folder = tmp_path / "fam"
    for s in range(CONSOLIDATE_AFTER + 1):
        write_old_shard(folder, range(3 * s, 3 * s + 3), compressed=(s == 0))
    assert_reads(folder, present=list(range(3 * (CONSOLIDATE_AFTER + 1))), absent=[999])
    assert (folder / INDEX).exists(), "the index is built on the first lookup"
    assert_reads(folder, present=list(range(3 * (CONSOLIDATE_AFTER + 1))), absent=[999])


def test_shards_removed_or_added_since_the_index_was_written(tmp_path):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER + 2)
    FeatureStore(folder).missing([key(0)])
    indexed = sorted(folder.glob("shard-*.npz"))
    with np.load(indexed[0]) as first:
        removed = [int(k.split("|")[0], 16) for k in first["keys"].tolist()]
    indexed[0].unlink()
    write_old_shard(folder, range(removed[0], removed[0] + 1))  # one removed row survives in another shard
    write_shards(folder, 500, 1)
    everything = set(range((CONSOLIDATE_AFTER + 2) * 5)) | set(range(500, 505))
    lost = removed[1:]
    assert_reads(folder, present=sorted(everything - set(lost)), absent=lost)
    assert indexed[0].name not in indexed_shards(folder), "an index naming a removed shard is rewritten"
    assert_reads(folder, present=sorted(everything - set(lost)), absent=lost)


def test_an_index_whose_shards_are_all_gone(tmp_path):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER)
    FeatureStore(folder).missing([key(0)])
    for shard in folder.glob("shard-*.npz"):
        shard.unlink()
    assert_reads(folder, present=[], absent=[0, 1])
    assert indexed_shards(folder) == []
    write_shards(folder, 50, 1)
    assert_reads(folder, present=list(range(50, 55)), absent=[0])


def test_missing_or_corrupt_index_and_leftovers_of_killed_writers_are_ignored(tmp_path, caplog):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER)
    FeatureStore(folder).missing([key(0)])
    n = CONSOLIDATE_AFTER * 5
    # what a writer killed between open() and os.replace() leaves: complete-looking temporary files
    np.savez(folder / ".shard-1-000000000000.tmp.npz", keys=np.asarray([key(777)]), values=row(777)[None])
    np.savez(folder / ".index-1-000000000000.tmp.npz", shards=np.asarray(["shard-x.npz"]),
             keys=np.asarray([key(777).encode()]), where=np.zeros((1, 2), np.int64))
    assert_reads(folder, present=list(range(n)), absent=[777])
    (folder / INDEX).unlink()
    assert_reads(folder, present=list(range(n)), absent=[777])
    (folder / INDEX).write_bytes((folder / INDEX).read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING, logger="negate.cache"):
        assert_reads(folder, present=list(range(n)), absent=[777])
    assert "unreadable cache index" in caplog.text
    assert len(indexed_shards(folder)) == CONSOLIDATE_AFTER, "a corrupt index is rebuilt"


def test_a_shard_cut_short_anywhere_is_ignored(tmp_path):
    folder = tmp_path / "fam"
    write_shards(folder, 0, 1, rows_per_shard=3)
    write_old_shard(folder, range(10, 12))
    (victim,) = [p for p in folder.glob("shard-*.npz") if key(10) in np.load(p)["keys"].tolist()]
    whole = victim.read_bytes()
    for cut in range(0, len(whole), 5):
        victim.write_bytes(whole[:cut])
        store = FeatureStore(folder)
        assert store.missing([key(0), key(10), key(11)]) == [key(10), key(11)], cut
        np.testing.assert_array_equal(store.get([key(2)]), row(2)[None])


def test_an_index_cut_short_anywhere_is_rebuilt(tmp_path):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER, rows_per_shard=2)
    FeatureStore(folder).missing([key(0)])
    whole = (folder / INDEX).read_bytes()
    for cut in range(0, len(whole), 17):
        (folder / INDEX).unlink()  # a new file: a reader may still map the old one
        (folder / INDEX).write_bytes(whole[:cut])
        store = FeatureStore(folder)
        assert store.missing([key(0), key(15), key(16)]) == [key(16)], cut
        np.testing.assert_array_equal(store.get([key(15), key(0)]), [row(15), row(0)])


def test_an_index_that_names_the_wrong_rows_is_not_trusted(tmp_path):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER)
    FeatureStore(folder).missing([key(0)])
    with np.load(folder / INDEX) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["where"] = arrays["where"][::-1].copy()  # every key now points at another key's row
    np.savez(folder / INDEX, **arrays)
    assert_reads(folder, present=list(range(CONSOLIDATE_AFTER * 5)), absent=[999])


def test_a_lookup_opens_only_the_index_and_the_shards_holding_wanted_rows(tmp_path, caplog):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER + 4)
    FeatureStore(folder).missing([key(0)])
    holder = next(p for p in folder.glob("shard-*.npz") if key(7) in np.load(p)["keys"].tolist())
    for shard in folder.glob("shard-*.npz"):
        if shard != holder:
            shard.write_bytes(b"PK\x03\x04 not read by this lookup")
    with caplog.at_level(logging.WARNING, logger="negate.cache"):
        store = FeatureStore(folder)
        assert store.missing([key(7), key(999)]) == [key(999)]
        np.testing.assert_array_equal(store.get([key(7)]), row(7)[None])
    assert caplog.text == "", "a shard that holds none of the wanted rows was opened"


def test_a_store_that_has_read_an_index_pickles(tmp_path):
    """ddp_spawn pickles the prediction writer, and the stores in it, after they have looked up keys."""
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER)
    store = FeatureStore(folder, names=["a"] * WIDTH)
    assert store.missing([key(0), key(999)]) == [key(999)] and (folder / INDEX).exists()
    copy = pickle.loads(pickle.dumps(store))
    copy.append([key(999)], row(999)[None])
    np.testing.assert_array_equal(copy.get([key(999), key(0)]), [row(999), row(0)])
    reasons = FailureStore(tmp_path).load()
    assert pickle.loads(pickle.dumps(reasons)) == {}


def _writer(folder: str, first: int, n_shards: int) -> None:
    store = FeatureStore(folder, names=["a"] * WIDTH)
    for s in range(n_shards):
        ids = range(first + 3 * s, first + 3 * s + 3)
        store.append([key(i) for i in ids], np.stack([row(i) for i in ids]))
        FeatureStore(folder).missing([key(first)])  # readers rewrite the index while the others write


def test_rows_of_concurrent_writers_and_index_rewrites_are_all_found(tmp_path):
    folder = tmp_path / "fam"
    n_procs, n_shards = 3, 2 * CONSOLIDATE_AFTER
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(folder), 1000 * p, n_shards)) for p in range(n_procs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    written = [1000 * p + i for p in range(n_procs) for i in range(3 * n_shards)]
    assert_reads(folder, present=written, absent=[999])
    assert not list(folder.glob(".*.tmp*")), "a temporary file was left behind"


def test_an_index_that_cannot_be_written_leaves_lookups_correct(tmp_path):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER + 1)
    (folder / INDEX).mkdir()  # os.replace onto it fails, as on a read-only or full disk
    for _ in range(2):
        assert_reads(folder, present=list(range((CONSOLIDATE_AFTER + 1) * 5)), absent=[999])
    assert (folder / INDEX).is_dir()
    assert not list(folder.glob(".*.tmp*")), "a temporary file was left behind"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_is_read_without_an_index(tmp_path):
    folder = tmp_path / "fam"
    write_shards(folder, 0, CONSOLIDATE_AFTER + 1)
    folder.chmod(0o555)
    try:
        assert_reads(folder, present=list(range((CONSOLIDATE_AFTER + 1) * 5)), absent=[999])
        assert not (folder / INDEX).exists()
    finally:
        folder.chmod(0o755)


def test_failures_are_found_through_the_index_too(tmp_path):
    root = tmp_path / "decode"
    for s in range(CONSOLIDATE_AFTER + 1):
        FailureStore(root).append([(key(s), f"bad {s}"), (key(100 + s), "truncated")])
    FailureStore(root).append([(key(0), "bad 0")])  # a racing writer recorded it again
    reasons = FailureStore(root).load()
    assert (root / "_failures" / INDEX).exists()
    assert key(3) in reasons and key(999) not in reasons
    assert reasons[key(3)] == "bad 3" and reasons.get(key(999), "none") == "none"
    expected = {key(s): f"bad {s}" for s in range(CONSOLIDATE_AFTER + 1)}
    expected |= {key(100 + s): "truncated" for s in range(CONSOLIDATE_AFTER + 1)}
    assert reasons == expected and len(reasons) == len(expected)
    shutil.rmtree(root / "_failures")
    assert FailureStore(root).load() == {}
