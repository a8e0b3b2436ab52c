"""Cache lookups must not grow with the rows cached: 10 images scored against 10^3 vs 10^5 cached rows.

    python scripts/bench_cache.py [--sizes 1000 100000] [--width 512] [--shard-rows 256] [--repeats 51]
                                  [--max-ratio 1.5] [--root DIR] [--no-extract]

Builds one synthetic family folder per size (``FeatureStore.append`` in shards of ``--shard-rows``, as extraction
writes them; random ``<sha256>|`` keys, ``--width`` float32 columns, one decode failure per 100 rows written ten at
a time). The 10 scored images are the last shard written, as a previous infer of them would have left them. Each
timing starts from a fresh store (what a new ``negate infer`` process sees), with the files in the page cache;
the median of ``--repeats`` rounds is reported, the sizes taking turns within a round. Timed:

* ``hits``: ``missing`` + ``get`` of the 10 keys (the cache call of a re-run on the same images);
* ``scattered``: the same for 10 keys spread over as many shards as the smallest folder has (5 for 10^3 rows), so
  both sizes touch the same number of shards;
* ``10 shards``: 10 keys in 10 different shards (all 5 of the smallest folder): reported, not gated, since it
  measures the cost of touching more shards (~constant per shard), not of holding more rows;
* ``misses``: ``missing`` of 10 keys never cached (the first run on new images), plus the failure lookups;
* ``extract``: ``negate.extract.extract_features`` on 10 cached items of the spectral family (the call ``negate
  infer`` makes; its rows are that family's real width), decode failures included;
* ``first lookup``: the first ``hits`` on a folder written without an index (it builds one), reported, not gated;
* ``full read``: reading every shard, as the cache did before the index, reported for comparison.

Exits 1 when a gated ratio (largest size / smallest) exceeds ``--max-ratio``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from negate.cache import FailureStore, FeatureStore  # noqa: E402

N_IMAGES = 10


def random_keys(rng: np.random.Generator, n: int) -> list[str]:
    return [f"{rng.bytes(32).hex()}|" for _ in range(n)]


def build_folder(folder: Path, failures_root: Path, n_rows: int, width: int, shard_rows: int,
                 rng: np.random.Generator) -> list[list[str]]:
    """``n_rows`` rows (the last ``N_IMAGES`` in a shard of their own) and ``n_rows / 100`` failures; returns the
    keys of each shard in the order written."""
    store = FeatureStore(folder, names=[f"f{i}" for i in range(width)])
    background = n_rows - N_IMAGES
    sizes = [shard_rows] * (background // shard_rows) + ([background % shard_rows] if background % shard_rows else [])
    shards = []
    for size in [*sizes, N_IMAGES]:
        keys = random_keys(rng, size)
        store.append(keys, rng.standard_normal((size, width), dtype=np.float32))
        shards.append(keys)
    failures = FailureStore(failures_root)
    for _ in range(max(1, n_rows // 1000)):
        failures.append([(k, "truncated JPEG") for k in random_keys(rng, 10)])
    return shards


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def lookup(folder: Path, failures_root: Path, keys: list[str], hits: bool) -> None:
    store = FeatureStore(folder)
    missing = store.missing(keys)
    known_failed = FailureStore(failures_root).load()
    reasons = [known_failed.get(k) for k in keys]
    if hits:
        assert not missing and store.get(keys).shape[0] == len(keys)
    else:
        assert missing == keys and reasons == [None] * len(keys)


def full_read(folder: Path) -> None:
    """What every lookup cost before the index: every shard's rows into one dict."""
    rows = {}
    for shard in sorted(folder.glob("shard-*.npz")):
        with np.load(shard, allow_pickle=False) as data:
            for key, value in zip(data["keys"].tolist(), data["values"]):
                rows.setdefault(key, value)


def extract_setup(root: Path, n_rows: int, shard_rows: int, rng: np.random.Generator):
    """A cache root holding ``n_rows`` spectral rows; returns the call ``negate infer`` makes for 10 of them."""
    from negate.cache import config_hash, family_folder
    from negate.data.dataset import ExtractionItem, PatchConfig
    from negate.extract import extract_features, pooled_names
    from negate.features.spectral import SpectralFeatures

    family, patches = SpectralFeatures(), PatchConfig()
    folder = family_folder(root, family.name, family.config_for_cache(), patches.as_dict())
    failures_root = root / f"decode-{config_hash({'max_pixels': 64_000_000})}"
    shards = build_folder(folder, failures_root, n_rows, len(pooled_names(family)), shard_rows, rng)
    items = [ExtractionItem(f"/nonexistent/{i}.png", k) for i, k in enumerate(shards[-1])]

    def run() -> None:
        table = extract_features(items, [family], patches, root)
        assert table.computed == 0 and len(table.keys) == N_IMAGES

    return run


def prepare(root: Path, n_rows: int, spread: int, args, rng: np.random.Generator) -> tuple[dict[str, float], dict]:
    """Builds the folders of one size; returns the one-off timings (ms) and the lookups to time repeatedly."""
    folder, failures_root = root / "family", root / "decode"
    shards = build_folder(folder, failures_root, n_rows, args.width, args.shard_rows, rng)
    hits = shards[-1]
    scattered = [shards[i % spread][i // spread] for i in range(N_IMAGES)]
    ten_shards = [shards[i % len(shards)][i // len(shards)] for i in range(N_IMAGES)]
    new = random_keys(rng, N_IMAGES)
    once = {"first lookup": 1000 * seconds(lambda: lookup(folder, failures_root, hits, True)),
            "full read": 1000 * seconds(lambda: full_read(folder))}
    repeated = {
        "hits": lambda: lookup(folder, failures_root, hits, True),
        "scattered": lambda: lookup(folder, failures_root, scattered, True),
        "10 shards": lambda: lookup(folder, failures_root, ten_shards, True),
        "misses": lambda: lookup(folder, failures_root, new, False),
    }
    if args.extract:
        repeated["extract"] = extract_setup(root / "cache", n_rows, args.shard_rows, rng)
        repeated["extract"]()  # builds the index, as the first infer after the rows were written would
    return once, repeated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--shard-rows", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=51)
    parser.add_argument("--max-ratio", type=float, default=1.5)
    parser.add_argument("--root", type=Path, default=None, help="where the folders are built (default: a temp dir)")
    parser.add_argument("--no-extract", dest="extract", action="store_false",
                        help="skip the extract_features timing (it imports torch and lightning)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    base = Path(tempfile.mkdtemp(prefix="negate-bench-cache-", dir=args.root))
    try:
        results, lookups = {}, {}
        spread = min(N_IMAGES, 1 + math.ceil((min(args.sizes) - N_IMAGES) / args.shard_rows))
        for n in args.sizes:
            t0 = time.perf_counter()
            results[n], lookups[n] = prepare(base / str(n), n, spread, args, rng)
            print(f"{n:>8} rows: built in {time.perf_counter() - t0:.0f} s", flush=True)
        # sizes alternate within each round, so a load from other jobs weighs on both alike
        times = {n: {name: [] for name in lookups[n]} for n in args.sizes}
        for _ in range(args.repeats):
            for name in lookups[args.sizes[0]]:
                for n in args.sizes:
                    times[n][name].append(seconds(lookups[n][name]))
        for n in args.sizes:
            results[n] |= {name: 1000 * statistics.median(t) for name, t in times[n].items()}
    finally:
        shutil.rmtree(base, ignore_errors=True)

    small, large = min(args.sizes), max(args.sizes)
    gated = ["hits", "scattered", "misses", *(["extract"] if args.extract else [])]
    print(f"{'ms, median':<14}" + "".join(f"{n:>12,}" for n in args.sizes) + f"{'ratio':>9}")
    failed = []
    for name in [*gated, "10 shards", "first lookup", "full read"]:
        ratio = results[large][name] / results[small][name]
        mark = ""
        if name in gated and ratio > args.max_ratio:
            failed.append(name)
            mark = f"  > {args.max_ratio}"
        print(f"{name:<14}" + "".join(f"{results[n][name]:>12.2f}" for n in args.sizes) + f"{ratio:>8.2f}x{mark}")
    if failed:
        print(f"FAIL: {', '.join(failed)} grew more than {args.max_ratio}x from {small:,} to {large:,} rows")
        return 1
    print(f"OK: every lookup within {args.max_ratio}x from {small:,} to {large:,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
