"""Each entry point, run as a user runs it (a new process, the real CLI), on the shipped sample set."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FAST = ["feature=[spectral]", "encoder=none", "classifier=xgboost", "patches.count=1", "patches.size=128", "eval.n_boot=50"]


def run(args: list[str], out: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``negate ARGS paths.output_dir=OUT`` in ``OUT/..`` with ``NEGATE_HOME=OUT/../home``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "NEGATE_HOME": str(out.parent / "home")}
    proc = subprocess.run([sys.executable, "-m", "negate.cli", *args, f"paths.output_dir={out}"], cwd=out.parent,
                          env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "outputs"
    proc = run(["train", *FAST, "logger=wandb"], out)
    (model_dir,) = list((out.parent / "home" / "models").iterdir())
    (run_dir,) = list((out / "runs" / "train").iterdir())
    return out, model_dir, run_dir, proc


def test_train_writes_model_folder_report_and_wandb_run(trained):
    out, model_dir, run_dir, proc = trained
    assert "auroc" in proc.stdout and str(model_dir) in proc.stdout
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.ubj", "model.json", "pipeline.yaml", "metrics.json", "MODEL_CARD.md", "checksums.sha256"} <= names
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["auroc"] <= 1.0 and metrics["split"]["test"] > 0
    assert (run_dir / "test" / "report.md").exists() and (run_dir / "test" / "roc.png").exists()
    assert list((run_dir / "wandb").glob("offline-run-*"))  # wandb offline: `wandb sync` can upload it later


def test_infer_in_a_new_process_reproduces_training_probabilities(trained):
    out, model_dir, run_dir, _ = trained
    with open(run_dir / "test_predictions.csv") as fh:
        expected = {row["path"]: float(row["prob_synthetic"]) for row in csv.DictReader(fh)}
    folder = Path(next(iter(expected))).parent
    result = out.parent / "pred.json"
    run(["infer", str(folder), "-m", str(model_dir), "output=json", f"output_file={result}"], out)
    rows = json.loads(result.read_text())
    compared = 0
    for row in rows:
        if row["path"] in expected:
            assert row["prob_synthetic"] == pytest.approx(expected[row["path"]], abs=1e-6)
            assert row["verdict"] in ("synthetic", "human", "uncertain")
            compared += 1
    assert compared >= 1


def test_infer_single_file_and_latest(trained):
    out, _, run_dir, _ = trained
    with open(run_dir / "test_predictions.csv") as fh:
        path = next(csv.DictReader(fh))["path"]
    proc = run(["infer", path], out)  # ckpt=latest
    assert "1 scored (" in proc.stdout and "), 0 skipped" in proc.stdout


def test_score_pairs_script_reads_a_pairs_manifest_per_edit(trained, tmp_path):
    out, model_dir, _, _ = trained
    sample = REPO / "negate" / "sample_data"
    reals = sorted((sample / "skimage_data").rglob("*.png"))[:2]
    fakes = sorted((sample / "pixart_sigma_repo").rglob("*.png"))[:2]
    lines = ["path\tlabel\tpair\tsource\tedit\tchanged_fraction"]
    for i, (r, f) in enumerate(zip(reals, fakes)):
        lines += [f"{r}\treal\tp{i}\ts\tinpaint\t0.3", f"{f}\tfake\tp{i}\ts\tinpaint\t0.3"]
    manifest = tmp_path / "PAIRS.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "score_pairs.py"), str(manifest), "-m",
                           str(model_dir)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "NEGATE_HOME": str(out.parent / "home")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 of 4 images scored" in proc.stdout and "changed < 0.5" in proc.stdout
    assert "operating point default, AI edits: " in proc.stdout and "operating point default, input photos: " in proc.stdout
    assert any(line.split()[:2] == ["inpaint", "2"] for line in proc.stdout.splitlines())


def test_evaluate_and_pretrain_run(trained):
    out, model_dir, _, _ = trained
    proc = run(["evaluate", f"ckpt={model_dir}", *FAST, "eval.robustness=false"], out)
    assert "report:" in proc.stdout
    proc = run(["pretrain", *FAST], out)
    (pre_dir,) = list((out / "runs" / "pretrain").iterdir())
    assert (pre_dir / "features_ranked.csv").exists() and list(pre_dir.glob("*.png"))


def test_missing_model_is_a_clear_error(tmp_path):
    proc = run(["infer", str(tmp_path), "-m", "nosuchmodel"], tmp_path / "outputs", check=False)
    assert proc.returncode == 2
    assert "no model named 'nosuchmodel'" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_help_lists_commands_and_groups():
    proc = subprocess.run([sys.executable, "-m", "negate.cli", "--help"], capture_output=True, text=True, check=True)
    for word in ("pretrain", "train", "infer", "evaluate", "feature", "encoder", "classifier", "trainer"):
        assert word in proc.stdout


def test_hub_encoder_offline_fails_fast_with_how_to_get_it(tmp_path):
    proc = run(["train", "encoder=dinov3", "ae=flux_klein"], tmp_path / "outputs", check=False)
    assert proc.returncode == 2
    assert "hf download" in proc.stderr and "vit_base_patch16_dinov3" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_default_recipe_on_the_sample_is_the_readme_first_command(tmp_path):
    out = tmp_path / "outputs"
    proc = run(["train", "eval.n_boot=50"], out)
    assert "negate train: test split" in proc.stdout
    (model_dir,) = list((out.parent / "home" / "models").iterdir())
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "logreg" in card and "reencode:jpeg90" in card
    assert "Selection protocol (measured for this recipe)" in card  # the default recipe's recorded LOSO numbers
    proc = run(["infer", str(Path(__file__).resolve().parent.parent / "negate" / "sample_data" / "kandinsky3_repo")], out)
    assert " scored (" in proc.stdout and "), 0 skipped" in proc.stdout


COMMAND_MODULES = ("train", "infer", "evaluate", "pretrain", "provenance_cmd")


def test_no_command_imports_another_and_no_library_imports_a_command():
    """One module per command (its ``@hydra.main`` and its workflow); shared code lives in library modules."""
    import ast

    commands = {f"negate.{name}" for name in COMMAND_MODULES}
    for path in sorted((REPO / "negate").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        if module in ("negate.cli", "negate.entry"):  # the dispatcher imports the command it runs
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if isinstance(node, ast.ImportFrom) and node.module == "negate":
                names = [f"negate.{a.name}" for a in node.names]
            assert not set(names) & (commands - {module}), f"{module} imports {set(names) & commands}"


@pytest.mark.parametrize(("module", "args", "expected"), [
    ("negate.evaluate", ["protocol=cv", "cv.group_by=family", "split.val_fraction=0.2"], "group_by: family"),
    ("negate.pretrain", ["experiment=handcrafted"], "task: pretrain"),
    ("negate.infer", ["ckpt=shipped"], "ckpt: shipped"),
])
def test_python_dash_m_entry_points_print_their_job_config(module, args, expected, tmp_path):
    proc = subprocess.run([sys.executable, "-m", module, "--cfg", "job", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout


def test_trained_model_stores_a_balanced_operating_point_that_infer_can_pick(trained):
    out, model_dir, run_dir, _ = trained
    info = json.loads((model_dir / "model.json").read_text())
    balanced = info["operating_points"]["balanced"]
    assert balanced["rule"].startswith("fpr (target FPR 0.05)") and 0.0 <= balanced["val_fpr"] <= 0.05
    assert "operating point `balanced`" in (model_dir / "MODEL_CARD.md").read_text()
    with open(run_dir / "test_predictions.csv") as fh:
        path = next(csv.DictReader(fh))["path"]
    proc = run(["infer", path, "-m", str(model_dir), "operating_point=balanced"], out)
    assert f"operating point balanced (also stored: default): threshold {balanced['threshold']:.3f}" in proc.stdout
    proc = run(["infer", path, "-m", str(model_dir), "operating_point=lenient"], out, check=False)
    assert proc.returncode == 2 and "no operating point 'lenient'; it has: default, balanced" in proc.stderr
    run(["evaluate", f"ckpt={model_dir}", "operating_point=balanced", *FAST, "eval.robustness=false"], out)
    newest = max((out / "runs" / "evaluate").iterdir(), key=lambda p: p.stat().st_mtime)
    report = json.loads((newest / "metrics.json").read_text())
    assert report["operating_point"] == "balanced"
    assert report["test"]["threshold"] == pytest.approx(balanced["threshold"])


def test_add_operating_point_script_finds_the_validation_split_and_checks_it(trained, tmp_path):
    import shutil

    out, model_dir, _, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    script = [sys.executable, str(REPO / "scripts" / "add_operating_point.py"), str(folder)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NEGATE_HOME": str(out.parent / "home")}
    sample = REPO / "negate" / "sample_data" / "MANIFEST.tsv"
    proc = subprocess.run([*script, str(sample), "--name", "loose", "--target-fpr", "0.5", "--note", "measured: none",
                           "--cache-dir", str(out / "cache")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TPR" in (folder / "MODEL_CARD.md").read_text().split("operating point `loose`")[1].split("; measured: none")[0]
    info = json.loads((folder / "model.json").read_text())
    assert set(info["operating_points"]) == {"balanced", "loose"} and info["operating_points"]["loose"]["val_fpr"] <= 0.5
    proc = run(["infer", str(sample.parent / "skimage_data"), "-m", str(folder), "operating_point=loose"], out)
    assert "operating point loose (also stored: default, balanced)" in proc.stdout  # checksums still verify
    other = tmp_path / "OTHER.tsv"  # not the data the model was trained on: refused, nothing written
    other.write_text("path\tlabel\n" + "".join(f"{p}\treal\n" for p in sorted((sample.parent / "skimage_data").rglob("*.png"))))
    before = (folder / "model.json").read_text()
    proc = subprocess.run([*script, str(other), "--name", "other"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0 and "validation images" in proc.stderr and (folder / "model.json").read_text() == before
