"""Same data, config and seed -> the same numbers, bit for bit, on CPU.

Two trainings with separate output folders and separate feature caches must give identical feature matrices,
identical model files (``model.ubj``, ``*.safetensors``, ``model.json``, ``pipeline.yaml``, ``metrics.json`` and so
``checksums.sha256``; only ``MODEL_CARD.md`` differs, by its date) and identical test metrics and predictions. The
XGBoost case runs in two fresh processes with different ``PYTHONHASHSEED`` values, so an iteration order that
depends on string hashing (a ``set`` of paths, say) cannot hide; the logistic-regression case runs in this process.

What makes this hold: patches are cut at fixed grid positions or from a generator seeded by the image's cache key
(never the global RNG); ``train`` calls ``seed_everything(seed)``; the split, XGBoost (``hist``, CPU) and scikit-learn
take ``seed`` explicitly; files are walked in sorted order and cache shards read in sorted order.

On a GPU the same code is deterministic run-to-run only up to floating-point summation order: cuFFT (the spectral
family's ``rfft2``) and cuDNN may choose different algorithms or reduction orders per run, device or batch size, so
features can differ in the last bits (use ``torch.use_deterministic_algorithms(True)`` and
``CUBLAS_WORKSPACE_CONFIG=:4096:8`` to narrow this; the non-deterministic atomics in convolution *backward* passes do
not matter here, since feature extraction is inference only). Such differences can move an XGBoost split threshold
and so change model bytes, and CPU and GPU features are not expected to match bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_labelled_folder
from hydra import compose, initialize_config_dir

from negate.cache import FeatureStore
from negate.paths import CONFIG_DIR

TINY = ["feature=[spectral,laplacian]", "encoder=none", "patches.count=2", "patches.size=96", "patches.selection=random",
        "split.group_by=source", "eval.n_boot=50"]
XGB = ["classifier=xgboost", "classifier.n_estimators=40", "classifier.pca_components=6", "classifier.subsample=0.7"]
LOGREG = ["classifier=logreg", "classifier.pca_components=5"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_labelled_folder(tmp_path_factory.mktemp("repro") / "data", n_per_class=15, sources=5)


def overrides(data: Path, out: Path, classifier: list[str]) -> list[str]:
    return ["data=folder", f"data.path={data}", f"paths.output_dir={out}", f"paths.models_dir={out / 'models'}", "seed=3",
            *TINY, *classifier]


def model_files(out: Path) -> dict[str, bytes]:
    (folder,) = (out / "models").iterdir()
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "MODEL_CARD.md"}


def cached_features(out: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Every family folder's rows, keyed by family folder name (which hashes the family and patch config)."""
    tables = {}
    for folder in sorted((out / "cache").iterdir()):
        if folder.is_dir() and not folder.name.startswith("decode-"):
            keys = set()
            for shard in folder.glob("shard-*.npz"):
                with np.load(shard, allow_pickle=False) as npz:
                    keys.update(npz["keys"].tolist())
            keys = sorted(keys)
            tables[folder.name] = (keys, FeatureStore(folder).get(keys))
    return tables


def run_metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("model_dir")
    return metrics


def assert_same_runs(a: Path, b: Path, run_a: Path, run_b: Path) -> None:
    fa, fb = cached_features(a), cached_features(b)
    assert fa.keys() == fb.keys() and len(fa) == 2
    for family in fa:
        assert fa[family][0] == fb[family][0] and len(fa[family][0]) == 30
        np.testing.assert_array_equal(fa[family][1], fb[family][1])
    ma, mb = model_files(a), model_files(b)
    assert ma.keys() == mb.keys()
    for name in ma:
        assert ma[name] == mb[name], f"{name} differs between two identical runs"
    assert run_metrics(run_a) == run_metrics(run_b)
    assert (run_a / "test_predictions.csv").read_bytes() == (run_b / "test_predictions.csv").read_bytes()


def test_two_trainings_in_one_process_are_identical(data, tmp_path):
    from negate.train import train

    for name in ("a", "b"):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides(data, tmp_path / name, LOGREG))
        train(cfg)
    files = model_files(tmp_path / "a")
    assert {"logreg.safetensors", "preprocess.safetensors", "model.json"} <= files.keys()
    assert_same_runs(tmp_path / "a", tmp_path / "b", *(tmp_path / n / "runs" / "library" for n in "ab"))


def test_two_trainings_in_fresh_processes_are_identical(data, tmp_path):
    procs = []
    for name, hash_seed in (("a", "1"), ("b", "2")):
        cmd = [sys.executable, "-m", "negate.train", *overrides(data, tmp_path / name, XGB)]
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for proc in procs:
        log = proc.communicate(timeout=300)[0].decode(errors="replace")
        assert proc.returncode == 0, log[-3000:]
    files = model_files(tmp_path / "a")
    assert {"model.ubj", "preprocess.safetensors", "model.json"} <= files.keys()
    runs = [next((tmp_path / n / "runs" / "train").iterdir()) for n in "ab"]
    assert_same_runs(tmp_path / "a", tmp_path / "b", *runs)
