"""Throughput and peak memory of ``negate infer`` on folders of N generated images: memory must not grow with N.

    python scripts/bench_infer.py [--sizes 500 2000 5000] [--ckpt MODEL_FOLDER] [--root /tmp/negate_bench]
                                  [--workers 0] [--batch-size 16] [--train-overrides feature=[spectral] ...]

Images: photo-like gradients plus noise, sides drawn log-uniformly from 64 to 1024 px (any aspect), half JPEG
(quality 70-95) and half PNG, generated once into ``ROOT/pool`` and hard-linked into one folder per N. Without
``--ckpt`` a model is trained first on the shipped sample set (``--train-overrides`` are passed to ``negate.train``).

Each N runs ``python -m negate.infer`` in a fresh process with a fresh feature cache (nothing is read back from an
earlier run). Peak RSS is sampled every 50 ms over the whole process tree (DataLoader workers included; psutil when
installed, else /proc) and also read from ``wait4`` (the infer process alone). ``startup`` is the wall time of the same
command on a single image (imports, model loading, Lightning set-up); ``img/s net`` discounts it. CPU seconds come
from ``wait4`` too, so the rate per CPU second holds up when other jobs share the cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------------------------ images

def make_image(rng: np.random.Generator, ext: str) -> tuple[Image.Image, dict]:
    h, w = (int(round(np.exp(rng.uniform(np.log(64), np.log(1024))))) for _ in range(2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= max(h, w)
    xx /= max(h, w)
    phase = rng.uniform(0, 6, 3).astype(np.float32)
    base = np.stack([np.sin(4 * xx + phase[0]), np.cos(3 * yy + phase[1]), np.sin(5 * (xx + yy) + phase[2])], -1)
    img = (base * 0.5 + 0.5) * 220 + rng.normal(0, 5, (h, w, 3)).astype(np.float32)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if ext == "jpg":
        return im, {"quality": int(rng.integers(70, 96))}
    return im, {"compress_level": 1}


def make_pool(pool: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` images in ``pool`` (kept between runs; only missing ones are generated)."""
    pool.mkdir(parents=True, exist_ok=True)
    paths = []
    t0 = time.perf_counter()
    for i in range(n):
        rng = np.random.default_rng((seed, i))  # image i is the same whatever n was before
        ext = "jpg" if rng.random() < 0.5 else "png"
        path = pool / f"img_{i:05d}.{ext}"
        if not path.exists():
            im, kw = make_image(rng, ext)
            tmp = path.with_name(f".{path.name}.tmp")
            im.save(tmp, format="JPEG" if ext == "jpg" else "PNG", **kw)
            os.replace(tmp, path)
        paths.append(path)
        if (i + 1) % 1000 == 0:
            print(f"  images: {i + 1}/{n} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return paths


def link_folder(folder: Path, files: list[Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f.name for f in files}
    for old in folder.iterdir():
        if old.name not in wanted:
            old.unlink()
    for f in files:
        target = folder / f.name
        if not target.exists():
            os.link(f, target)
    return folder


# ------------------------------------------------------------------------------------------------------ memory

def _descendants(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (one pass over every process's stat line)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class TreeRSS:
    """Resident bytes of a process and its descendants; the tree is re-listed every ``relist`` seconds only, since
    walking /proc costs far more than reading a few statm files (psutil is used when installed)."""

    def __init__(self, pid: int, relist: float = 0.5):
        self.pid, self.relist = pid, relist
        self.pids: list[int] = [pid]
        self.listed = 0.0
        try:
            import psutil

            self.psutil = psutil
        except ImportError:
            self.psutil = None

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self.listed > self.relist:
            self.listed = now
            if self.psutil:
                try:
                    proc = self.psutil.Process(self.pid)
                    self.pids = [proc.pid, *(c.pid for c in proc.children(recursive=True))]
                except self.psutil.NoSuchProcess:
                    self.pids = []
            else:
                self.pids = _descendants(self.pid)
        return sum(_rss(p) for p in self.pids)


def run_measured(cmd: list[str], log: Path, timeout: float) -> dict:
    """Run ``cmd``; wall seconds, exit code, sampled peak tree RSS, the process's own ru_maxrss (bytes) and its CPU
    seconds (user + system, its reaped DataLoader workers included)."""
    peak = [0]
    with open(log, "wb") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
        done = threading.Event()

        tree_rss = TreeRSS(proc.pid)

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss())
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        deadline = time.monotonic() + timeout
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": seconds, "rc": proc.returncode, "peak_tree": peak[0], "maxrss": usage.ru_maxrss * 1024,
            "cpu": usage.ru_utime + usage.ru_stime}


# ------------------------------------------------------------------------------------------------------ runs

def train_model(root: Path, overrides: list[str]) -> Path:
    out = root / "train"
    cmd = [sys.executable, "-m", "negate.train", f"paths.output_dir={out}", f"paths.models_dir={out / 'models'}",
           *overrides]
    print("training:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return sorted((out / "models").iterdir())[-1]


def infer_cmd(ckpt: Path, folder: Path, out: Path, args) -> list[str]:
    return [sys.executable, "-m", "negate.infer", f"ckpt={ckpt}", f"path={folder}", f"paths.output_dir={out}",
            "output=csv", f"output_file={out / 'predictions.csv'}", "print_limit=0",
            f"extract.num_workers={args.workers}", f"extract.batch_size={args.batch_size}"]


def count_scored(csv_path: Path) -> tuple[int, int]:
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return sum(not r["error"] for r in rows), len(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 5000])
    p.add_argument("--root", type=Path, default=Path("/tmp/negate_bench"))
    p.add_argument("--ckpt", type=Path, default=None, help="model folder; default: train one on the sample set")
    p.add_argument("--workers", type=int, default=0, help="extract.num_workers")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--train-overrides", nargs="*", default=["feature=[spectral]", "patches.count=1"])
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")

    root = args.root
    print(f"generating {max(args.sizes)} images in {root / 'pool'}", flush=True)
    pool = make_pool(root / "pool", max(args.sizes))
    ckpt = args.ckpt or train_model(root, args.train_overrides)
    print(f"model: {ckpt}", flush=True)

    results = []
    for n in [1, *args.sizes]:
        folder = link_folder(root / f"n{n}", pool[:n])
        out = root / f"infer_n{n}"
        shutil.rmtree(out, ignore_errors=True)
        m = run_measured(infer_cmd(ckpt, folder, out, args), root / f"infer_n{n}.log", args.timeout)
        if m["rc"] != 0:
            sys.exit(f"infer on {n} images exited {m['rc']}; see {root / f'infer_n{n}.log'}")
        m["n"], (m["scored"], m["rows"]) = n, count_scored(out / "predictions.csv")
        results.append(m)
        print(f"  N={n}: {m['seconds']:.1f} s, peak RSS {m['peak_tree'] / 2**20:.0f} MB", flush=True)

    startup = results[0]["seconds"]
    mpx = float(np.mean([np.prod(Image.open(f).size) for f in pool])) / 1e6
    print(f"\nnegate infer, model {ckpt}\nimages: 64..1024 px (mean {mpx:.2f} Mpx), half JPEG / half PNG; "
          f"extract.num_workers={args.workers}, batch_size={args.batch_size}; startup (N=1) {startup:.1f} s\n")
    head = (f"{'N':>6} {'scored':>7} {'seconds':>8} {'img/s':>7} {'img/s net':>9} {'CPU s':>7} {'img/CPU-s net':>13} "
            f"{'peak RSS MB':>12} {'maxrss MB':>10}")
    print(head)
    print("-" * len(head))
    base_cpu = results[0]["cpu"]
    for m in results[1:]:
        net = (m["n"] - 1) / max(1e-9, m["seconds"] - startup)
        net_cpu = (m["n"] - 1) / max(1e-9, m["cpu"] - base_cpu)
        print(f"{m['n']:>6} {m['scored']:>7} {m['seconds']:>8.1f} {m['n'] / m['seconds']:>7.1f} {net:>9.1f} "
              f"{m['cpu']:>7.1f} {net_cpu:>13.1f} {m['peak_tree'] / 2**20:>12.0f} {m['maxrss'] / 2**20:>10.0f}")
    print("\nimg/s net and img/CPU-s net discount the N=1 run (start-up); on a shared machine trust CPU seconds "
          "over wall seconds.")


if __name__ == "__main__":
    main()
