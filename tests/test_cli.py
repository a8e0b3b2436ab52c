"""The ``negate`` command as a new user meets it (issue #12): several paths and globs, output that pipes, run folders
that never collide, models found from any directory, misspelt keys refused, one-line errors, tiny images.

Real files and real processes: a small model is trained once in this process; every command runs as
``python -m negate.cli ...`` in a new process, several at once where they are independent.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import write_labelled_folder
from hydra import compose, initialize_config_dir
from PIL import Image

from negate.cli import _quote, split_infer_args
from negate.infer import format_rows
from negate.inputs import collect_inputs
from negate.model_folder import ModelFolderError, new_model_dir
from negate.overrides import ConfigKeyError, check_overrides
from negate.paths import CONFIG_DIR, SHIPPED_MODEL_DIR, negate_home, unique_run_dir
from negate.registry import resolve_ckpt

TINY = ["feature=[spectral]", "encoder=none", "classifier=logreg", "data.reencode=none", "patches.count=1",
        "patches.size=64", "split.group_by=null", "eval.n_boot=20"]
TIMEOUT = 300


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A NEGATE_HOME with one trained model, a folder of images to score, and an unrelated working directory."""
    from negate.train import train

    root = tmp_path_factory.mktemp("cli")
    home, data = root / "home", write_labelled_folder(root / "data", n_per_class=8)
    metrics = train(compose_cfg("train", ["data=folder", f"data.path={data}", f"paths.output_dir={root / 'train'}",
                                          f"paths.models_dir={home / 'models'}", *TINY]))
    photos = root / "photos"
    photos.mkdir()
    images = sorted(data.rglob("*.*"))
    for i, src in enumerate(images[:3] + images[-3:]):  # PNGs (fake) and JPEGs (real)
        shutil.copy(src, photos / f"img_{i}{src.suffix}")
    Image.new("RGB", (1, 1), (120, 80, 40)).save(photos / "dot.png")
    work = root / "work"
    work.mkdir()
    return {"root": root, "home": home, "model": Path(metrics["model_dir"]), "photos": photos, "work": work}


def env_for(home: Path) -> dict:
    return {**os.environ, "NEGATE_HOME": str(home), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def start(args: list[str], cwd: Path, home: Path, shell: bool = False) -> subprocess.Popen:
    cmd = " ".join(args) if shell else [sys.executable, "-m", "negate.cli", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, shell=shell)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


# ------------------------------------------------------------------------------------------------- in this process

def test_infer_arguments_are_paths_unless_they_are_overrides(tmp_path):
    odd = tmp_path / "a=b.jpg"
    odd.write_bytes(b"")
    paths, rest = split_infer_args(["x.jpg", "dir/", "output=csv", str(odd), "-m", "my model", "'*.png'",
                                    "--cfg", "job", "--", "-dash.jpg", "k=v.jpg"])
    assert paths == ["x.jpg", "dir/", str(odd), "'*.png'", "-dash.jpg", "k=v.jpg"]
    assert rest == ["output=csv", f"ckpt={_quote('my model')}", "--cfg", "job"]


def test_a_file_asked_for_is_never_silently_not_written():
    from negate.infer import output_format

    assert output_format("table", None) == "table" and output_format("csv", "-") == "csv"
    assert output_format("table", "scores.jsonl") == "jsonl"
    with pytest.raises(ValueError, match="needs output=csv"):
        output_format("table", "scores.txt")
    with pytest.raises(ValueError, match="output must be one of"):
        output_format("xml", None)
    with pytest.raises(ValueError, match="needs a model"):
        split_infer_args(["a.jpg", "-m"])


def test_inputs_expand_globs_and_score_each_image_once(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.png"):
        Image.new("RGB", (40, 40)).save(tmp_path / name)
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "sub" / "d.jpg")
    os.symlink(tmp_path / "a.jpg", tmp_path / "sub" / "link.jpg")
    given = [str(tmp_path / "a.jpg"), f"{tmp_path}/./a.jpg", str(tmp_path / "*.jpg"), str(tmp_path / "**" / "*.jpg"),
             str(tmp_path / "sub"), str(tmp_path / "nope.jpg"), str(tmp_path / "*.gif")]
    inputs = collect_inputs(given)
    assert [p for p, r in inputs if not r] == [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "sub/d.jpg")]
    assert dict((p, r) for p, r in inputs if r) == {str(tmp_path / "nope.jpg"): "no such file or folder",
                                                     str(tmp_path / "*.gif"): "no file matches this pattern"}


def test_rows_are_written_by_their_keys():
    rows = [{"path": "a,b.jpg", "prob_synthetic": 0.25, "verdict": "human", "reason": "", "error": ""},
            {"path": "c.jpg", "prob_synthetic": None, "verdict": "error", "reason": "", "error": "file not found"}]
    assert csv_rows(format_rows(rows, "csv"))[0]["path"] == "a,b.jpg"
    assert csv_rows(format_rows(rows, "csv"))[1]["prob_synthetic"] == ""
    assert json.loads(format_rows(rows, "json")) == rows
    assert [json.loads(line) for line in format_rows(rows, "jsonl").splitlines()] == rows
    extra = [{**r, "provenance": "x"} for r in rows]  # a new column is one more key
    assert list(csv_rows(format_rows(extra, "csv"))[0]) == [*rows[0], "provenance"]


@pytest.mark.parametrize(("command", "args", "hint"), [
    ("train", ["classifer.C=0.1"], "did you mean 'classifier.C'?"),
    ("train", ["+classifer.C=0.1"], "did you mean 'classifier.C'?"),
    ("train", ["classifer=xgboost"], "did you mean 'classifier'?"),
    ("train", ["classifier=xgbost"], "did you mean 'xgboost'?"),
    ("train", ["feature=[spectral,npx]"], "did you mean 'npr'?"),
    ("infer", ["+outptu=csv"], "did you mean 'output'?"),
    ("infer", ["outptu=csv"], "did you mean 'output'?"),
    ("evaluate", ["protocol=cv", "cv.group_bi=generator"], "did you mean 'cv.group_by'?"),
    ("evaluate", ["protocol=loso"], "options: cv, holdout"),
])
def test_misspelt_keys_and_groups_are_refused_with_the_nearest_name(command, args, hint):
    with pytest.raises(ConfigKeyError) as err:
        check_overrides(command, args)
    assert hint in str(err.value) and "\n" not in str(err.value)


def test_documented_options_need_no_plus_and_open_mappings_take_new_keys():
    assert check_overrides("train", ["+classifier.C=0.1", "data.reencode=none"]) == ["classifier.C=0.1",
                                                                                    "data.reencode=none"]
    args = ["-m", "classifier=logreg,xgboost", "classifier.max_depth=3", "+trainer.max_epochs=3", "eval.loso=true",
            "+encoder.families.extra={a: 1}", "hydra.run.dir=x"]
    assert check_overrides("train", args) == args
    assert check_overrides("infer", ["output_file=-", "quiet=true", "min_side=16", "ckpt=shipped"])
    members = ["experiment=ensemble", "++ensemble.overrides.finetuned_no_aligned=['finetune.max_epochs=20']"]
    assert check_overrides("train", members) == members  # an ensemble member's own overrides: an open mapping


def test_run_folders_started_in_the_same_second_never_collide(tmp_path):
    base = str(tmp_path / "runs" / "infer" / "2026-01-01_00-00-00")
    made = {unique_run_dir(base) for _ in range(50)}
    assert len(made) == 50 and all(Path(p).is_dir() and Path(p).name.startswith("2026-01-01_00-00-00_") for p in made)
    # through the config: each composition resolves its own folder, once
    dirs = []
    for _ in range(2):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("infer", [f"paths.output_dir={tmp_path / 'out'}"], return_hydra_config=True)
        dirs.append(cfg.hydra.run.dir)
        assert cfg.hydra.run.dir == dirs[-1]
    assert dirs[0] != dirs[1] and all(Path(d).is_dir() for d in dirs)


def test_negate_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NEGATE_HOME", str(tmp_path / "nh"))
    assert negate_home() == tmp_path / "nh"
    monkeypatch.delenv("NEGATE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert negate_home() == tmp_path / "xdg" / "negate"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert negate_home() == tmp_path / "user" / ".local" / "share" / "negate"
    cfg = compose_cfg("train", [])
    assert cfg.paths.models_dir == str(tmp_path / "user" / ".local" / "share" / "negate" / "models")


def fake_model(folder: Path, mtime: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text("{}")
    os.utime(folder / "model.json", (mtime, mtime))
    return folder


def test_ckpt_names_latest_and_the_shipped_fallback(tmp_path):
    home, legacy, shipped = tmp_path / "home" / "models", tmp_path / "outputs" / "models", tmp_path / "shipped"
    roots = [home, legacy]
    with pytest.raises(ModelFolderError, match="no trained model"):
        resolve_ckpt("latest", roots, shipped=shipped)
    fake_model(shipped, 1)
    assert resolve_ckpt("latest", roots, shipped=shipped) == shipped
    assert resolve_ckpt("shipped", roots, shipped=shipped) == shipped
    old = fake_model(legacy / "20200101_000000", 1_000)
    assert resolve_ckpt("latest", roots, shipped=shipped) == old
    new = fake_model(home / "mine", 2_000)
    assert resolve_ckpt("latest", roots, shipped=shipped) == new
    assert resolve_ckpt("mine", roots, shipped=shipped) == new
    assert resolve_ckpt(str(old), roots, shipped=shipped) == old
    with pytest.raises(ModelFolderError, match="did you mean 'mine'"):
        resolve_ckpt("mnie", roots, shipped=shipped)
    with pytest.raises(ModelFolderError, match="no shipped model"):
        resolve_ckpt("shipped", roots, shipped=tmp_path / "absent")


def test_model_folders_are_created_atomically_and_names_are_unique(tmp_path):
    folders = {new_model_dir(tmp_path) for _ in range(5)}
    assert len(folders) == 5
    assert new_model_dir(tmp_path, "mine") == tmp_path / "mine"
    with pytest.raises(ModelFolderError, match="already exists"):
        new_model_dir(tmp_path, "mine")


@pytest.mark.skipif(not (SHIPPED_MODEL_DIR / "model.json").is_file(), reason="no shipped model in this checkout")
def test_the_shipped_model_loads():
    from negate.model_folder import load_checked_model

    model, _ = load_checked_model("shipped", [])
    assert model.folder == SHIPPED_MODEL_DIR


# ------------------------------------------------------------------------------------------------- real commands

def test_infer_several_paths_from_another_directory_to_stdout(world):
    photos, work, home = world["photos"], world["work"], world["home"]
    files = sorted(photos.iterdir())
    args = ["infer", str(files[0]), str(files[1]), str(files[0]), f"{photos}/*.png", str(photos),
            str(photos / "missing.jpg"), "output=csv", "quiet=false"]  # logs and progress on, yet not on stdout
    procs = {
        "csv": start(args, work, home),
        "pipe": start([sys.executable, "-m", "negate.cli", "infer", f"{photos}/*.jpg", "output=csv", "|", "head", "-n",
                       "2"], work, home, shell=True),
    }
    results = {name: finish(proc) for name, proc in procs.items()}

    rc, out, err = results["csv"]
    assert rc == 1, err[-3000:]  # one input missing
    rows = csv_rows(out)  # stdout is the CSV and nothing else
    pngs = [str(f) for f in files if f.suffix == ".png"]  # the glob, as negate (not a shell) expands it
    jpgs = [str(f) for f in files if f.suffix == ".jpg"]  # then the folder: only what is new
    assert [r["path"] for r in rows] == [str(files[0]), str(files[1]), *pngs[2:], *jpgs, str(photos / "missing.jpg")]
    by_path = {r["path"]: r for r in rows}
    assert by_path[str(photos / "missing.jpg")]["verdict"] == "error"
    dot = by_path[str(photos / "dot.png")]
    assert dot["verdict"] == "uncertain" and "1x1" in dot["reason"] and "32" in dot["reason"]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("synthetic", "human", "uncertain")}
    assert (f"{len(files)} scored ({counts['synthetic']} synthetic, {counts['human']} human, "
            f"{counts['uncertain']} uncertain), 1 skipped: see ") in err
    assert "skipped.csv" in err and "Traceback" not in err
    # the summary states the bounds the verdicts were given by
    import re

    synthetic_from, human_below = map(float, re.search(r"synthetic when p >= ([\d.]+), human when p < ([\d.]+)",
                                                       err).groups())
    for r in rows:
        if r["verdict"] == "synthetic":
            assert float(r["prob_synthetic"]) >= synthetic_from - 5e-4
        elif r["verdict"] == "human":
            assert float(r["prob_synthetic"]) < human_below + 5e-4
    assert "[INFO] - extracting" in err and "Predicting" in err
    (run_dir,) = (work / "outputs" / "runs" / "infer").glob("*/skipped.csv")
    assert csv_rows(run_dir.read_text()) == [{"path": str(photos / "missing.jpg"), "reason": "no such file or folder"}]
    assert not list(work.glob("outputs/models")), "models are registered in NEGATE_HOME, not in the working directory"

    rc, out, err = results["pipe"]
    assert rc == 0 and out.splitlines()[0] == "path,prob_synthetic,verdict,reason,error,provenance,declared_ai,verified_ai,provenance_error" and len(out.splitlines()) == 2
    assert "Traceback" not in err and "Error" not in err


def test_two_infers_started_together_keep_all_their_rows(world):
    photos, work, home = world["photos"], world["root"] / "together", world["home"]
    work.mkdir()
    procs = [start(["infer", str(photos), "output=csv"], work, home),
             start(["infer", str(photos), "-m", world["model"].name, "output=jsonl"], work, home)]  # a model by name
    (rc, out_csv, err), (rc2, out_jsonl, err2) = [finish(p) for p in procs]
    assert rc == rc2 == 0, (err + err2)[-3000:]
    n = len(list(photos.iterdir()))
    assert len(csv_rows(out_csv)) == n
    assert [json.loads(line)["path"] for line in out_jsonl.splitlines()] == [r["path"] for r in csv_rows(out_csv)]
    assert str(world["model"]) in err and str(world["model"]) in err2
    saved = sorted((work / "outputs" / "runs" / "infer").glob("*/predictions.csv"))
    assert len(saved) == 2, "each run has its own folder"
    assert all(len(csv_rows(p.read_text())) == n for p in saved)


def test_user_errors_are_one_line_with_exit_status_2_and_help_documents_them(world, tmp_path):
    home, work = world["home"], world["work"]
    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text("path\tlabel\ngone1.jpg\treal\ngone2.png\tfake\n")
    edited = Path(shutil.copytree(world["model"], tmp_path / "edited"))
    pipeline = yaml.safe_load((edited / "pipeline.yaml").read_text())
    pipeline["patches"]["stride"] = 3
    (edited / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    lines = (edited / "checksums.sha256").read_text().splitlines()
    (edited / "checksums.sha256").write_text("".join(
        f"{hashlib.sha256((edited / n).read_bytes()).hexdigest()}  {n}\n" for n in (ln.split("  ", 1)[1] for ln in lines)))
    cases = {
        "no path": (["infer"], "no input"),
        "all rows missing": (["train", "data=manifest", f"data.path={manifest}", *TINY], "none of the 2 images"),
        "unknown patches key": (["infer", str(world["photos"]), "-m", str(edited)], "stride"),
        "typo": (["train", "classifer.C=0.1"], "did you mean 'classifier.C'?"),
        "unknown +key": (["infer", str(world["photos"]), "+outptu=csv"], "did you mean 'output'?"),
        "unknown command": (["trian"], "did you mean 'train'?"),
    }
    procs = {name: start(args, work, home) for name, (args, _) in cases.items()}
    help_proc = start(["infer", "--help"], work, home)
    for name, proc in procs.items():
        rc, out, err = finish(proc)
        assert rc == 2, (name, rc, err[-2000:])
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[")]  # not log lines
        assert len(lines) == 1 and lines[0].startswith("error: ") and cases[name][1] in lines[0], (name, err[-2000:])
        assert "Traceback" not in err

    rc, out, _ = finish(help_proc)  # the exit status is documented where users look
    assert rc == 0
    for text in ("PATH...", "output=csv|json|jsonl", "output_file", "Exit status: 0", "1 some inputs", "2 usage",
                 "uncertain", "min_side"):
        assert text in out, text
