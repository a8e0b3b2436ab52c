"""Time-bounded fuzzing of the whole infer path: mutated image files in a folder -> ``negate.infer.predict``.

    python scripts/fuzz_infer.py --seconds 300 [--out outputs/fuzz_infer] [--ckpt MODEL_FOLDER] [--batch 24]
                                 [--seed 0] [--train-overrides feature=[spectral,laplacian] ...]

Each round writes ``--batch`` inputs into a fresh folder (seeds and mutators of ``scripts/fuzz_loader.py``: bit flips,
integer overwrites, inserts, deletes, truncation, splicing, PNG CRC / RIFF size repair; random file names and image
extensions) and scores the folder in this process, through scanning, hashing, the feature cache, the Lightning
DataLoader, patching, the feature families and the detector. Without ``--ckpt`` a small model is trained first on the
shipped sample set.

A *crash* is any exception out of ``predict`` (bad files must come back as rows with a reason, never raise) or a
broken contract: every file listed exactly once; a scored row has a finite probability in [0, 1] and a verdict; an
error row has a non-empty one-line reason; every ``--recheck`` rounds the same folder is scored again from the warm
cache and must give the same rows. A crashing round is replayed file by file to find the culprit; crashing inputs go
to ``OUT/crashes/<sha>.bin`` with the traceback in ``.txt`` (the whole round's files under ``OUT/crashes/round_*/``
when no single file reproduces it). The current round is kept in ``OUT/work/`` while it runs, so if a C decoder takes
the process down the inputs that did it are still on disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import fuzz_loader  # noqa: E402  (seeds and mutators shared with the loader fuzzer)
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from negate.data.decode import IMAGE_EXTENSIONS  # noqa: E402
from negate.infer import predict  # noqa: E402
from negate.paths import CONFIG_DIR  # noqa: E402

VERDICTS = {"human", "synthetic", "uncertain"}
EXTENSIONS = sorted(IMAGE_EXTENSIONS) + [".JPG", ".Png"]


class ContractError(AssertionError):
    """predict returned, but its rows break the contract."""


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def train_model(out: Path, overrides: list[str]) -> Path:
    from negate.train import train

    metrics = train(compose_cfg("train", [f"paths.output_dir={out}", "eval.n_boot=50", *overrides]))
    return Path(metrics["model_dir"])


def write_round(folder: Path, rng: random.Random, seeds, n: int) -> dict[str, str]:
    """``n`` mutated inputs in a fresh ``folder``; returns {file path: seed it came from}."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    origin = {}
    for i in range(n):
        name, data = fuzz_loader.next_input(rng, seeds)
        path = folder / f"in_{i:03d}{rng.choice(EXTENSIONS)}"
        path.write_bytes(data)
        origin[str(path)] = name
    return origin


def check_rows(rows: list[dict], files: set[str]) -> None:
    listed = Counter(r["path"] for r in rows)
    if set(listed) != files or max(listed.values(), default=1) != 1:
        raise ContractError(f"rows do not list every file once: missing {sorted(files - set(listed))[:3]}, "
                            f"extra {sorted(set(listed) - files)[:3]}, repeated {[p for p, c in listed.items() if c > 1][:3]}")
    for r in rows:
        if r["error"]:
            if r["verdict"] != "error" or r["prob_synthetic"] is not None or "\n" in r["error"] or not r["error"].strip():
                raise ContractError(f"bad error row {r}")
        else:
            p = r["prob_synthetic"]
            if p is None or not math.isfinite(p) or not 0.0 <= p <= 1.0 or r["verdict"] not in VERDICTS:
                raise ContractError(f"bad scored row {r}")


def score(cfg, folder: Path) -> list[dict]:
    cfg.path = str(folder)
    rows, _ = predict(cfg)
    return rows


def attempt(cfg, folder: Path) -> tuple[list[dict] | None, BaseException | None]:
    try:
        rows = score(cfg, folder)
        check_rows(rows, {str(p) for p in folder.iterdir()})
        return rows, None
    except Exception as err:  # noqa: BLE001  (anything out of predict is a finding)
        return None, err


def signature(err: BaseException) -> str:
    tb = traceback.extract_tb(err.__traceback__)
    where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
    return f"{type(err).__name__}@{where}"


def save_crash(out: Path, data: bytes, note: str) -> Path:
    folder = out / "crashes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(note)
    return path


def isolate(cfg, out: Path, folder: Path, origin: dict[str, str], err: BaseException, round_no: int) -> list[str]:
    """Replay a crashing round one file at a time (fresh cache) and save the inputs that crash alone."""
    note = "".join(traceback.format_exception(err))
    single, found = out / "single", []
    cache = cfg.paths.cache_dir
    cfg.paths.cache_dir = str(out / "cache_isolate")
    try:
        for path in sorted(folder.iterdir()):
            shutil.rmtree(single, ignore_errors=True)
            single.mkdir()
            shutil.copy2(path, single / path.name)
            _, e = attempt(cfg, single)
            if e is not None:
                saved = save_crash(out, path.read_bytes(), f"seed {origin[str(path)]}\n{signature(e)}\n"
                                   + "".join(traceback.format_exception(e)))
                found.append(str(saved))
    finally:
        cfg.paths.cache_dir = cache
        shutil.rmtree(out / "cache_isolate", ignore_errors=True)
    if not found:  # only the combination fails: keep the whole round
        keep = out / "crashes" / f"round_{round_no:05d}"
        shutil.copytree(folder, keep, dirs_exist_ok=True)
        (keep / "TRACEBACK.txt").write_text(note)
        found.append(str(keep))
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "fuzz_infer")
    p.add_argument("--ckpt", type=Path, default=None)
    p.add_argument("--batch", type=int, default=24, help="inputs per round (one infer call)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recheck", type=int, default=10, help="every N rounds, score the round again from the cache")
    p.add_argument("--fresh-cache", type=int, default=50, help="empty the feature cache every N rounds")
    p.add_argument("--train-overrides", nargs="*", default=["feature=[spectral,laplacian]", "patches.count=2",
                                                             "patches.size=128"])
    args = p.parse_args()
    out = args.out
    shutil.rmtree(out / "crashes", ignore_errors=True)  # the report covers this run only
    out.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")  # PIL warns on every corrupt tag; outcomes are what we judge
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)

    ckpt = args.ckpt or train_model(out / "train", args.train_overrides)
    cfg = compose_cfg("infer", [f"ckpt={ckpt}", "path=unset", f"paths.output_dir={out / 'run'}",
                                f"paths.cache_dir={out / 'cache'}", "extract.batch_size=8",
                                "+trainer.enable_progress_bar=false"])
    OmegaConf.set_readonly(cfg, False)
    seeds = fuzz_loader.make_seeds()
    rng = random.Random(args.seed)
    stats = {"rounds": 0, "inputs": 0, "scored": 0, "errors": 0, "rechecks": 0, "crashes": Counter(),
             "reasons": Counter(), "seconds_per_round_max": 0.0}
    saved: list[str] = []
    work = out / "work"
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    while time.monotonic() < deadline:
        round_no = stats["rounds"]
        if round_no and round_no % args.fresh_cache == 0:
            shutil.rmtree(out / "cache", ignore_errors=True)
        origin = write_round(work, rng, seeds, args.batch)
        t = time.perf_counter()
        rows, err = attempt(cfg, work)
        if err is None and args.recheck and round_no % args.recheck == 0:
            again, err = attempt(cfg, work)
            stats["rechecks"] += 1
            if err is None and sorted(again, key=lambda r: r["path"]) != sorted(rows, key=lambda r: r["path"]):
                err = ContractError("scoring the same folder again from the cache gave other rows")
        stats["seconds_per_round_max"] = max(stats["seconds_per_round_max"], time.perf_counter() - t)
        stats["rounds"] += 1
        stats["inputs"] += args.batch
        if err is not None:
            stats["crashes"][signature(err)] += 1
            found = isolate(cfg, out, work, origin, err, round_no)
            saved += found
            print(f"round {round_no}: {signature(err)}: {str(err).splitlines()[0][:200]} -> {found}", flush=True)
            continue
        for r in rows:
            if r["error"]:
                stats["errors"] += 1
                reason = r["error"].removeprefix(f"{r['path']}: ")
                stats["reasons"][re.sub(r"\d+", "N", reason.split(" (")[0])[:60]] += 1
            else:
                stats["scored"] += 1
    shutil.rmtree(work, ignore_errors=True)
    wall = time.monotonic() - t0
    report = {**stats, "crashes": dict(stats["crashes"]), "reasons": dict(stats["reasons"].most_common(25)),
              "saved": saved, "seconds": round(wall, 1), "model": str(ckpt)}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"{stats['inputs']} inputs in {stats['rounds']} infer calls, {wall:.0f} s: {stats['scored']} scored, "
          f"{stats['errors']} reported with a reason, {sum(stats['crashes'].values())} crashing rounds; "
          f"report in {out / 'report.json'}")
    sys.exit(1 if stats["crashes"] else 0)


if __name__ == "__main__":
    main()
