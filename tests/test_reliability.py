"""Crash safety of the feature cache, and how the CLI behaves on broken inputs and unusable output folders.

Real processes throughout: a ``train`` killed with SIGKILL during extraction must resume without losing or
duplicating an image; two extractions into one cache at once must not corrupt it; an unwritable cache folder, a folder
of broken files and a mix of good and broken files must end with a one-line reason and the documented exit status,
never a traceback.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from bad_corpus import make_bad_corpus
from conftest import write_labelled_folder
from hydra import compose, initialize_config_dir

from negate.cache import FeatureStore
from negate.data.dataset import make_key
from negate.paths import CONFIG_DIR, PACKAGE_DIR
from negate.pipeline import FeatureRunner, load_records, pipeline_from_cfg

TINY = ["feature=[spectral]", "encoder=none", "classifier=xgboost", "data.reencode=none", "patches.count=1", "split.group_by=null", "eval.n_boot=20"]
EXTRACT_SMALL = ["extract.batch_size=2", "extract.shard_rows=4"]
TIMEOUT = 240


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def negate_cmd(command: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", f"negate.{command}", *overrides]


def start(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Run in its own session so a kill reaches the whole process tree, with stdout+stderr in ``log``."""
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    try:
        rc = proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"{proc.args} did not finish in {TIMEOUT} s:\n{log.read_text(errors='replace')[-3000:]}")
    return rc, log.read_text(errors="replace")


def expected_keys(folder: Path) -> set[str]:
    """Cache keys of every image under ``folder`` (the pipeline's default view is the file as it is)."""
    return {make_key(hashlib.sha256(p.read_bytes()).hexdigest(), "") for p in folder.rglob("*") if p.is_file()}


def family_dir(cache: Path) -> Path:
    (folder,) = cache.glob("spectral-*")
    return folder


def shard_keys(folder: Path) -> dict[str, list[str]]:
    """Keys of every shard in a family folder; each shard must load (no pickle) and be well formed."""
    out = {}
    for shard in sorted(folder.glob("shard-*.npz")):
        with np.load(shard, allow_pickle=False) as data:
            keys, values = data["keys"].tolist(), data["values"]
        assert values.ndim == 2 and values.shape[0] == len(keys) > 0, shard
        assert np.isfinite(values).all(), shard
        out[shard.name] = keys
    return out


def clean_run(data: Path, cache: Path) -> tuple[list[str], np.ndarray, int]:
    """Features of a folder extracted once, in this process, into a fresh cache: the reference numbers."""
    cfg = compose_train(["data=folder", f"data.path={data}", f"paths.cache_dir={cache}", *TINY])
    records, _ = load_records(cfg.data)
    runner = FeatureRunner(pipeline_from_cfg(cfg), cfg)
    _, table = runner.features(records)
    return table.keys, table.X, table.computed


def store_rows(cache: Path, keys: list[str]) -> np.ndarray:
    return FeatureStore(family_dir(cache)).get(keys)


@pytest.fixture(scope="module")
def sixty(tmp_path_factory) -> tuple[Path, list[str], np.ndarray]:
    """60 labelled images and their reference features."""
    root = tmp_path_factory.mktemp("sixty")
    data = write_labelled_folder(root / "data", n_per_class=30, seed=7)
    keys, X, computed = clean_run(data, root / "clean_cache")
    assert computed == len(keys) == 60
    return data, keys, X


def test_killed_extraction_resumes_without_losing_or_repeating_an_image(sixty, tmp_path):
    data, ref_keys, ref_X = sixty
    out = tmp_path / "out"
    cmd = negate_cmd("train", "data=folder", f"data.path={data}", f"paths.output_dir={out}", *TINY, *EXTRACT_SMALL)
    proc = start(cmd, tmp_path, tmp_path / "killed.log")
    deadline = time.monotonic() + TIMEOUT
    while not list(out.glob("cache/spectral-*/shard-*.npz")):
        if proc.poll() is not None:
            pytest.fail(f"train ended before writing a shard:\n{(tmp_path / 'killed.log').read_text()[-3000:]}")
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL

    folder = family_dir(out / "cache")
    before = shard_keys(folder)
    done = {k for keys in before.values() for k in keys}
    assert 0 < len(done) < 60, "the kill must land during extraction"
    # what a write interrupted between open() and os.replace() leaves behind: a complete-looking temporary file
    planted = folder / ".shard-1-000000000000.tmp.npz"
    np.savez(planted, keys=np.asarray(["planted|"]), values=np.ones((1, ref_X.shape[1]), np.float32))
    assert "planted|" not in FeatureStore(folder), "a .tmp file was read as a shard"

    proc = start(cmd, tmp_path, tmp_path / "resumed.log")
    rc, log = finish(proc, tmp_path / "resumed.log")
    assert rc == 0, log[-3000:]
    after = shard_keys(folder)
    counts = Counter(k for keys in after.values() for k in keys)
    assert set(counts) == expected_keys(data) == set(ref_keys)
    assert max(counts.values()) == 1, "an image got two rows"
    new_rows = sum(len(keys) for name, keys in after.items() if name not in before)
    assert new_rows == 60 - len(done), "the resumed run recomputed cached images"
    np.testing.assert_array_equal(store_rows(out / "cache", ref_keys), ref_X)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_stops_train_within_2_s_and_keeps_the_cache_consistent(sixty, tmp_path, signum):
    data, ref_keys, ref_X = sixty
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "negate.cli", "train", "data=folder", f"data.path={data}", f"paths.output_dir={out}",
           f"paths.models_dir={out / 'models'}", *TINY, *EXTRACT_SMALL]
    log = tmp_path / "stopped.log"
    proc = start(cmd, tmp_path, log)
    deadline = time.monotonic() + TIMEOUT
    while not list(out.glob("cache/spectral-*/shard-*.npz")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"train ended before writing a shard:\n{log.read_text()[-3000:]}")
        time.sleep(0.005)
    sent = time.monotonic()
    proc.send_signal(signum)  # to the process, as `kill PID` or Ctrl-C in its terminal would
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"still running 10 s after {signum.name}")
    took = time.monotonic() - sent
    text = log.read_text(errors="replace")
    assert took < 2.0, f"stopped {took:.2f} s after {signum.name}"
    assert rc == 128 + signum, text[-3000:]
    assert f"{signum.name} received, stopping" in text and "Traceback" not in text
    assert not list(out.glob("models/*")), "an interrupted train must not register a model"

    folder = family_dir(out / "cache")
    assert not list(folder.glob(".*.tmp*")), "a temporary file was left behind"
    shards = shard_keys(folder)  # every shard loads and is well formed
    done = [k for keys in shards.values() for k in keys]
    assert 0 < len(done) < 60 and len(done) == len(set(done))
    ref = dict(zip(ref_keys, ref_X))
    np.testing.assert_array_equal(store_rows(out / "cache", done), np.stack([ref[k] for k in done]))


WORKER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from hydra import compose, initialize_config_dir
    from negate.paths import CONFIG_DIR
    from negate.pipeline import FeatureRunner, load_records, pipeline_from_cfg

    data, cache, ready_dir, me, reverse = sys.argv[1:6]
    overrides = sys.argv[6:]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=folder", f"data.path={data}", f"paths.cache_dir={cache}",
                                                        *overrides])
    records, _ = load_records(cfg.data)
    records = records[::-1] if reverse == "1" else records
    runner = FeatureRunner(pipeline_from_cfg(cfg), cfg)
    runner.hashes(records)
    Path(ready_dir, me).touch()
    while len(list(Path(ready_dir).iterdir())) < 2:  # start extracting together
        time.sleep(0.002)
    kept, table = runner.features(records)
    print(json.dumps({"computed": table.computed, "kept": len(kept)}))
""")


def test_two_processes_extracting_into_one_cache(sixty, tmp_path):
    data, ref_keys, ref_X = sixty
    cache, ready = tmp_path / "cache", tmp_path / "ready"
    ready.mkdir()
    procs = [
        start([sys.executable, "-c", WORKER, str(data), str(cache), str(ready), f"w{i}", str(i), *TINY,
               *EXTRACT_SMALL], tmp_path, tmp_path / f"w{i}.log")
        for i in range(2)
    ]
    results = [finish(p, tmp_path / f"w{i}.log") for i, p in enumerate(procs)]
    for rc, log in results:
        assert rc == 0, log[-3000:]
    reports = [json.loads(log.strip().splitlines()[-1]) for _, log in results]
    assert all(r["kept"] == 60 for r in reports)
    assert all(r["computed"] > 0 for r in reports), "both processes must have written into the cache"

    folder = family_dir(cache)
    assert not list(folder.glob(".*.tmp*")), "a temporary file was left behind"
    shards = shard_keys(folder)
    assert {k for keys in shards.values() for k in keys} == set(ref_keys)
    # rows written twice (both processes computed them) must agree with each other and with a single-process run
    ref = dict(zip(ref_keys, ref_X))
    for shard, keys in shards.items():
        with np.load(folder / shard, allow_pickle=False) as npz:
            for key, row in zip(keys, npz["values"]):
                np.testing.assert_array_equal(row, ref[key])
    np.testing.assert_array_equal(store_rows(cache, ref_keys), ref_X)


def test_unwritable_cache_or_output_folder_fails_with_a_clear_message(tmp_path):
    data = write_labelled_folder(tmp_path / "data", n_per_class=4)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    runs = {
        "cache": negate_cmd("train", "data=folder", f"data.path={data}", f"paths.output_dir={tmp_path / 'out'}",
                            f"paths.models_dir={tmp_path / 'out' / 'models'}", f"paths.cache_dir={blocker / 'cache'}",
                            *TINY),
        "output": negate_cmd("train", "data=folder", f"data.path={data}", f"paths.output_dir={blocker / 'out'}",
                             f"paths.models_dir={tmp_path / 'out' / 'models'}", *TINY),
    }
    procs = {name: start(cmd, tmp_path, tmp_path / f"{name}.log") for name, cmd in runs.items()}
    results = {name: finish(proc, tmp_path / f"{name}.log") for name, proc in procs.items()}

    rc, log = results["cache"]
    assert rc == 2, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    (line,) = [ln for ln in log.splitlines() if ln.startswith("error:")]
    assert str(blocker) in line and "cache" in line and "Not a directory" in line
    assert not list((tmp_path / "out").glob("models/*")), "nothing may be trained when the cache cannot be written"

    # Hydra creates the run folder before negate runs: it reports the failure itself, naming the folder, without
    # frames from negate, Lightning or torch
    rc, log = results["output"]
    assert rc != 0
    assert str(blocker / "out") in log and "Not a directory" in log
    frames = re.findall(r'File "([^"]+)"', log)
    deep = [f for f in frames if f.startswith(str(PACKAGE_DIR)) or re.search(r"site-packages/(lightning|torch)/", f)]
    assert not deep, log[-3000:]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from negate.train import train

    root = tmp_path_factory.mktemp("model")
    data = write_labelled_folder(root / "data", n_per_class=8)
    metrics = train(compose_train(["data=folder", f"data.path={data}", f"paths.output_dir={root / 'out'}", *TINY,
                                   "classifier=logreg"]))
    return Path(metrics["model_dir"])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_infer_on_good_and_bad_files(tiny_model, tmp_path):
    mixed, only_bad = tmp_path / "mixed", tmp_path / "only_bad"
    expected = make_bad_corpus(mixed / "bad")
    good = write_labelled_folder(mixed / "good", n_per_class=2)
    expected.update({str(p.relative_to(mixed)): "ok" for p in good.rglob("*.*")})
    expected = {(k if k.startswith("good/") else f"bad/{k}"): v for k, v in expected.items()}
    bad_only = make_bad_corpus(only_bad)
    for name, outcome in bad_only.items():
        if outcome == "ok":
            (only_bad / name).unlink()

    common = [f"ckpt={tiny_model}", "extract.batch_size=4"]
    runs = {
        "mixed": negate_cmd("infer", *common, f"path={mixed}", f"paths.output_dir={tmp_path / 'o1'}", "output=csv",
                            f"output_file={tmp_path / 'mixed.csv'}"),
        "only_bad": negate_cmd("infer", *common, f"path={only_bad}", f"paths.output_dir={tmp_path / 'o2'}"),
    }
    procs = {name: start(cmd, tmp_path, tmp_path / f"{name}.log") for name, cmd in runs.items()}
    results = {name: finish(proc, tmp_path / f"{name}.log") for name, proc in procs.items()}

    rc, log = results["mixed"]
    assert rc == 1, log[-3000:]
    assert "Traceback" not in log
    rows = {str(Path(r["path"]).relative_to(mixed)): r for r in read_csv(tmp_path / "mixed.csv")}
    assert set(rows) == set(expected)
    for name, outcome in expected.items():
        row = rows[name]
        if outcome == "ok":
            assert row["error"] == "" and row["verdict"] in ("human", "synthetic", "uncertain"), (name, row)
            assert 0.0 <= float(row["prob_synthetic"]) <= 1.0
        else:
            assert row["verdict"] == "error" and row["prob_synthetic"] == "", (name, row)
            assert row["error"].strip() and "\n" not in row["error"], (name, row)
    n_bad = sum(v == "error" for v in expected.values())
    assert f"{len(expected) - n_bad} scored (" in log and f"), {n_bad} skipped: see " in log

    rc, log = results["only_bad"]
    assert rc == 2, log[-3000:]
    assert "Traceback" not in log
    (line,) = [ln for ln in log.splitlines() if ln.startswith("error:")]
    assert "could be scored" in line and str(only_bad) in line


def test_train_lists_corrupt_images_in_skipped_csv(tmp_path):
    from negate.train import train

    data = write_labelled_folder(tmp_path / "data", n_per_class=8)
    good = next((data / "real").rglob("*.jpg"))
    truncated = good.with_name("truncated.jpg")
    truncated.write_bytes(good.read_bytes()[:300])
    text = data / "fake" / "fake_src0" / "notes.png"
    text.write_text("not an image\n")
    metrics = train(compose_train(["data=folder", f"data.path={data}", f"paths.output_dir={tmp_path / 'out'}", *TINY,
                                   "classifier=logreg"]))
    skipped = {r["path"]: r["reason"] for r in read_csv(tmp_path / "out" / "runs" / "library" / "skipped.csv")}
    assert set(skipped) == {str(truncated), str(text)}
    assert "truncated" in skipped[str(truncated)] and "not an image" in skipped[str(text)]
    assert metrics["n_skipped"] == 2
    assert sum(metrics["split"].values()) == 16
