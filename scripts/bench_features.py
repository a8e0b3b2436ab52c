"""Throughput of the forensic feature families, with and without image decoding.

    python scripts/bench_features.py --data /work/shared/data/dev --n 200

For each patch size (default 256, 512, 1024; one centre patch per image unless --count), torch thread count and
mode (``--modes``: the eager modules and/or the families under ``torch.compile``, as ``extract.compile`` runs them;
compile time is reported apart as the warm-up) it reports images/s for

* JPEG decode alone (PIL, the project's ``decode_image``) and decode of every selected file;
* each family and the full set on pre-decoded uint8 patches (decode excluded; the uint8 -> float conversion the
  extraction engine does is included);
* the full set with decode + ``extract_patches`` in this process (decode included, single process);
* the full set fed by the project's ``PatchDataModule`` with ``--workers`` loader processes (decode in workers);
* the full set computed inside ``--workers`` loader processes (decode + features per worker, 1 torch thread each),
  the layout that uses every core without intra-op synchronisation.

Each row gives wall-clock images/s and ms/image and the CPU ms/image (this process plus finished loader workers),
which is the steadier figure when other jobs share the cores. Each figure is the best of ``--repeat`` runs. Peak
RSS of this process and of its loader children comes from ``resource.getrusage``. ``--no-malloc-tune`` keeps
glibc's default of returning freed memory to the OS, which turns every large temporary tensor into fresh page
faults (``tune_malloc``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from negate.extract import tune_malloc

FAMILIES = ["spectral", "laplacian", "lbp", "wavelet", "resize_crop", "npr", "dct"]


def select_images(data: Path, n: int) -> list[dict]:
    """``n`` manifest rows spread evenly over the manifest (so every source and format is represented)."""
    rows = []
    with open(data / "MANIFEST.tsv") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        for line in fh:
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    step = max(1, len(rows) // n)
    return rows[::step][:n]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_of(repeat: int, fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and of children that finished) of the fastest of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        start, cpu, child = time.perf_counter(), time.process_time(), _children_cpu()
        fn()
        runs.append((time.perf_counter() - start, time.process_time() - cpu + _children_cpu() - child))
    return min(runs)


class FeatureWorkerDataset(torch.utils.data.Dataset):
    """Decode, cut and featurise one batch of files per item, inside a DataLoader worker."""

    def __init__(self, blobs, batch: int, size: int, count: int, selection: str, names: list[str], compiled: bool):
        self.chunks = [blobs[i : i + batch] for i in range(0, len(blobs), batch)]
        self.size, self.count, self.selection, self.names, self.compiled = size, count, selection, names, compiled
        self.families = None

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> int:
        from negate.data.decode import decode_image
        from negate.data.patches import extract_patches
        from negate.features import create_feature
        from negate.features.compiled import compile_families

        if self.families is None:
            torch.set_num_threads(1)
            self.families = [create_feature(n).eval() for n in self.names]
            if self.compiled:
                self.families = compile_families(self.families)
        imgs = [torch.from_numpy(np.asarray(decode_image(b), dtype=np.uint8).copy()).permute(2, 0, 1) for b in self.chunks[index]]
        x = torch.stack([extract_patches(i, self.size, self.count, self.selection) for i in imgs]).flatten(0, 1)
        x = x.float().div_(255.0)
        with torch.inference_mode():
            return sum(int(f(x).shape[1]) for f in self.families)


def warm_up(families, x: torch.Tensor) -> float:
    """Seconds to compile (or just run once) every family on ``x`` and on a one-image batch (the last batch)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for fam in families:
            fam(x)
            fam(x[:1])
    return time.perf_counter() - start


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with MANIFEST.tsv")
    parser.add_argument("--n", type=int, default=200, help="images")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--count", type=int, default=1, help="patches per image")
    parser.add_argument("--selection", default="center")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads choices")
    parser.add_argument("--batch", type=int, default=8, help="images per forward call")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the loader run (0 skips it)")
    parser.add_argument("--families", nargs="+", default=FAMILIES)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-malloc-tune", action="store_true")
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"],
                        help="eager modules and/or torch.compile (negate.features.compiled), as extract.compile")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--device", default="cpu", help="cuda: the families run on the GPU (patches decoded on the "
                        "CPU and copied per batch, as extraction does); the in-worker run stays on the CPU")
    args = parser.parse_args(argv)

    tuned = False if args.no_malloc_tune else tune_malloc()
    from negate.data.datamodule import PatchDataModule
    from negate.data.dataset import ExtractionItem, PatchConfig
    from negate.data.decode import decode_image, read_file_bytes
    from negate.data.patches import extract_patches
    from negate.features import create_feature
    from negate.features.compiled import compile_families

    device = torch.device(args.device)
    rows = select_images(args.data, args.n)
    paths = [str(args.data / r["path"]) for r in rows]
    blobs = [read_file_bytes(p) for p in paths]
    is_jpeg = [r.get("format", "").upper() == "JPEG" for r in rows]
    n = len(paths)
    print(f"# {n} images from {args.data}; patch count {args.count} ({args.selection}); batch {args.batch} images; "
          f"malloc tuned: {tuned}; torch {torch.__version__}; {torch.get_num_threads()} default threads", flush=True)
    results: list[dict] = []

    def record(kind: str, size, threads, timing: tuple[float, float], images: int) -> None:
        seconds, cpu = timing
        row = {"kind": kind, "size": size, "threads": threads, "images": images, "seconds": round(seconds, 4),
               "cpu_seconds": round(cpu, 4), "img_per_s": round(images / seconds, 2)}
        results.append(row)
        print(f"| {kind:36s} | {str(size):>5s} | {threads} | {row['img_per_s']:8.1f} | {1000 * seconds / images:8.2f} | "
              f"{1000 * cpu / images:8.2f} |", flush=True)

    def to_array(blob: bytes) -> np.ndarray:
        return np.asarray(decode_image(blob), dtype=np.uint8)

    print("| measurement | size | threads | img/s (wall) | ms/img (wall) | CPU ms/img |\n|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        jpeg_blobs = [b for b, j in zip(blobs, is_jpeg) if j]
        if jpeg_blobs:
            record("decode JPEG only (PIL -> RGB array)", "-", threads,
                   best_of(args.repeat, lambda: [to_array(b) for b in jpeg_blobs]), len(jpeg_blobs))
        record("decode all formats", "-", threads, best_of(args.repeat, lambda: [to_array(b) for b in blobs]), n)

        decoded = [torch.from_numpy(to_array(b).copy()).permute(2, 0, 1) for b in blobs]
        for size, mode in [(size, mode) for size in args.sizes for mode in args.modes]:
            tag = "" if mode == "eager" else " compiled"
            torch._dynamo.reset()  # fresh modules each round: do not let their compiled variants pile up
            families = {name: create_feature(name).eval().to(device) for name in args.families}
            if mode == "compiled":
                families = dict(zip(families, compile_families(list(families.values()))))
            patches = torch.stack([extract_patches(img, size, args.count, args.selection) for img in decoded])
            batches = [patches[i : i + args.batch] for i in range(0, n, args.batch)]
            with torch.inference_mode():  # as the timed runs, or the first of them recompiles
                seconds = warm_up(families.values(), batches[0].flatten(0, 1).to(device).float().div_(255.0))
            print(f"# {mode} {size}: warm-up (compile) {seconds:.1f} s", flush=True)

            def run(fams, batch_list):
                for b in batch_list:
                    x = b.flatten(0, 1).to(device).float().div_(255.0)
                    for fam in fams:
                        fam(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            with torch.inference_mode():
                for name, fam in families.items():
                    record(f"{name}{tag} (pre-decoded)", size, threads, best_of(args.repeat, lambda: run([fam], batches)), n)
                record(f"FULL SET{tag} (pre-decoded)", size, threads, best_of(args.repeat, lambda: run(families.values(), batches)), n)

                def decode_and_run():
                    for i in range(0, n, args.batch):
                        imgs = [torch.from_numpy(to_array(b).copy()).permute(2, 0, 1) for b in blobs[i : i + args.batch]]
                        batch = torch.stack([extract_patches(img, size, args.count, args.selection) for img in imgs])
                        run(families.values(), [batch])

                record(f"FULL SET{tag} + decode, 1 process", size, threads, best_of(args.repeat, decode_and_run), n)

                if args.workers > 0 and device.type == "cpu":
                    items = [ExtractionItem(p, f"bench{i}|", "") for i, p in enumerate(paths)]
                    module = PatchDataModule(items, PatchConfig(size, args.count, args.selection), batch_size=args.batch,
                                             num_workers=args.workers)

                    def loader_run():
                        for batch in module.predict_dataloader():
                            run(families.values(), [batch["patches"]])

                    record(f"FULL SET{tag} + decode, {args.workers} workers", size, threads, best_of(args.repeat, loader_run), n)

                    inside = FeatureWorkerDataset(blobs, args.batch, size, args.count, args.selection, list(families),
                                                  mode == "compiled")

                    # spawned, not forked: a child forked after the parent ran OpenMP threads can hang in compiled code
                    loader = torch.utils.data.DataLoader(inside, batch_size=None, num_workers=args.workers,
                                                         persistent_workers=True, multiprocessing_context="spawn")

                    def features_in_workers():
                        for _ in loader:
                            pass

                    # the workers persist: the first pass compiles in each of them (untimed), the timed ones reuse it
                    seconds = best_of(1, features_in_workers)[0]
                    print(f"# {mode} {size}: first pass inside workers (their warm-up) {seconds:.1f} s", flush=True)
                    record(f"FULL SET{tag} inside {args.workers} workers", size, threads, best_of(args.repeat, features_in_workers), n)
                    del loader
    own, children = peak_rss_mib()
    print(f"# peak RSS: this process {own:.0f} MiB, loader children {children:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "peak_rss_mib": {"self": own, "children": children},
                                         "malloc_tuned": tuned, "argv": sys.argv[1:]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
