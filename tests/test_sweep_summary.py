"""scripts/sweep_summary.py on a hand-built Hydra multirun tree."""

import csv
import importlib.util
import json
import os
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sweep_summary.py"


@pytest.fixture(scope="module")
def sweep_summary():
    spec = importlib.util.spec_from_file_location("sweep_summary", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run(sweep: Path, name: str, overrides: list[str], metrics: dict | str | None):
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if isinstance(metrics, dict):
        (run / "metrics.json").write_text(json.dumps(metrics))
    elif isinstance(metrics, str):
        (run / "metrics.json").write_text(metrics)
    return run


@pytest.fixture()
def multirun(tmp_path):
    root = tmp_path / "outputs" / "multirun"
    old = root / "2025-01-01" / "09-00-00"
    make_run(old, "0", ["model=xgb"], {"test": {"auroc": 0.99}})
    new = root / "2025-01-02" / "10-00-00"
    make_run(new, "0", ["model=xgb", "feature=[spectral,lbp]"],
             {"test": {"auroc": 0.81, "ece": 0.05}, "loso": {"auroc_mean": 0.7, "per_source": [1, 2]}})
    make_run(new, "1", ["model=logreg", "feature=[spectral,lbp]"],
             {"test": {"auroc": 0.93, "ece": 0.09}, "loso": {"auroc_mean": 0.6, "folds": {"a": 0.5}}})
    make_run(new, "2", ["model=mlp", "+trainer.max_epochs=3"], None)  # crashed before writing metrics
    make_run(new, "3", ["model=svm"], "{not json")
    make_run(new, "10", ["model=knn"], {"test": {"auroc": None, "ece": 0.2}})  # NaN written as null
    make_run(new, "11", ["model=rf"], {"title": "t", "overall": {"auroc": 0.85, "ece": 0.1}, "per_source": []})
    os.utime(old, (1_000, 1_000))
    os.utime(new, (2_000, 2_000))
    return root, new


def test_find_latest(sweep_summary, multirun):
    root, new = multirun
    assert sweep_summary.find_latest_multirun(root) == new
    with pytest.raises(FileNotFoundError):
        sweep_summary.find_latest_multirun(root / "missing")


def test_collect_and_sort(sweep_summary, multirun):
    _, new = multirun
    rows = sweep_summary.collect_runs(new)
    assert [r["run"] for r in rows] == ["0", "1", "2", "3", "10", "11"]
    by_run = {r["run"]: r for r in rows}
    assert by_run["2"]["status"] == "failed" and "no metrics.json" in by_run["2"]["error"]
    assert by_run["3"]["status"] == "failed" and "unreadable" in by_run["3"]["error"]
    assert by_run["2"]["overrides"] == {"model": "mlp", "trainer.max_epochs": "3"}
    assert by_run["1"]["metrics"] == {"test.auroc": 0.93, "test.ece": 0.09, "loso.auroc_mean": 0.6, "loso.folds.a": 0.5}
    assert by_run["11"]["metrics"] == {"test.auroc": 0.85, "test.ece": 0.1}
    ordered = sweep_summary.sort_runs(rows, "auroc")
    assert [r["run"] for r in ordered] == ["1", "11", "0", "10", "2", "3"]
    ordered = sweep_summary.sort_runs(rows, "test.ece", ascending=True)
    assert [r["run"] for r in ordered][:4] == ["0", "1", "11", "10"]
    ordered = sweep_summary.sort_runs(rows, "loso.auroc_mean")
    assert [r["run"] for r in ordered][:2] == ["0", "1"]


def test_main_writes_markdown_and_csv(sweep_summary, multirun, capsys, monkeypatch):
    root, new = multirun
    monkeypatch.chdir(root.parent.parent)
    assert sweep_summary.main([]) == 0  # default root outputs/multirun -> newest sweep
    with open(new / "summary.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["run"] for r in table] == ["1", "11", "0", "10", "2", "3"]
    assert list(table[0])[:2] == ["run", "status"]
    assert table[0]["model"] == "logreg" and table[0]["feature"] == "[spectral,lbp]"
    assert float(table[0]["test.auroc"]) == pytest.approx(0.93)
    assert table[4]["status"] == "failed"
    md = (new / "summary.md").read_text()
    assert "6 runs, 2 failed" in md and "| 1 | ok | " in md
    printed = capsys.readouterr().out
    assert "logreg" in printed and "failed" in printed


def test_main_explicit_dir_and_out(sweep_summary, multirun, tmp_path):
    root, _ = multirun
    old = root / "2025-01-01" / "09-00-00"
    assert sweep_summary.main([str(old), "--out", str(tmp_path / "summ"), "--metric", "test.auroc"]) == 0
    assert (tmp_path / "summ" / "summary.md").is_file()
    assert sweep_summary.main([str(tmp_path / "empty")]) == 1
