"""A saved model folder loads only as it was written: every tampered, truncated, missing or incompatible piece is
refused with ``ModelFolderError`` and a message naming the problem. Nothing in it is a pickle, and nothing loads one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_labelled_folder
from hydra import compose, initialize_config_dir

from negate.model_folder import load_checked_model
from negate.model_folder import ModelFolderError
from negate.paths import CONFIG_DIR, PACKAGE_DIR
from negate.pipeline import FeatureRunner, load_records

TINY = ["feature=[spectral]", "encoder=none", "classifier=xgboost", "patches.count=1", "patches.size=128", "split.group_by=null", "eval.n_boot=20"]
CLASSIFIERS = {
    "xgboost": ["classifier=xgboost", "classifier.n_estimators=30", "classifier.pca_components=4"],
    "logreg": ["classifier=logreg"],
}


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, tuple[Path, Path, object]]:
    """``{classifier: (model folder, run folder, cfg)}`` of two tiny models trained on generated images."""
    from negate.train import train

    root = tmp_path_factory.mktemp("model_folder")
    data = write_labelled_folder(root / "data", n_per_class=8)
    out = {}
    for name, overrides in CLASSIFIERS.items():
        cfg = compose_train(["data=folder", f"data.path={data}", f"paths.output_dir={root / name}",
                             f"paths.cache_dir={root / 'cache'}", *TINY, *overrides])
        metrics = train(cfg)
        out[name] = (Path(metrics["model_dir"]), root / name / "runs" / "library", cfg)
    return out


def copy_of(trained, kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained[kind][0], tmp_path / "model"))


def load(folder: Path):
    return load_checked_model(str(folder), str(folder.parent))


def rewrite_checksums(folder: Path) -> None:
    """What someone who edits a file on purpose does next: make the checksums match again."""
    lines = (folder / "checksums.sha256").read_text().splitlines()
    names = [line.split("  ", 1)[1] for line in lines]
    (folder / "checksums.sha256").write_text(
        "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names))


def edit_json(folder: Path, name: str, change) -> None:
    info = json.loads((folder / name).read_text())
    change(info)
    (folder / name).write_text(json.dumps(info, indent=1, sort_keys=True))


def edit_pipeline(folder: Path, change) -> None:
    pipeline = yaml.safe_load((folder / "pipeline.yaml").read_text())
    change(pipeline)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=True))


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_digest(folder: Path) -> None:
    text = (folder / "checksums.sha256").read_text()
    line = next(ln for ln in text.splitlines() if ln.endswith("  model.json"))
    digest = line[:64]
    other = ("1" if digest[0] != "1" else "2") + digest[1:]
    (folder / "checksums.sha256").write_text(text.replace(line, other + line[64:]))


def drop_line(folder: Path, name: str) -> None:
    lines = (folder / "checksums.sha256").read_text().splitlines(keepends=True)
    (folder / "checksums.sha256").write_text("".join(ln for ln in lines if not ln.rstrip().endswith("  " + name)))


def add_line(folder: Path, line: str) -> None:
    with open(folder / "checksums.sha256", "a") as fh:
        fh.write(line + "\n")


def other_feature_config(pipeline: dict) -> None:
    pipeline["feature"]["spectral"]["n_bins"] = 16  # another spectral config: other column names


def target_torch_load(pipeline: dict) -> None:
    # a crafted pipeline.yaml that would unpickle a file when the families are built
    pipeline["feature"]["spectral"] = {"_target_": "torch.load", "f": "evil.pt", "weights_only": False}


def nested_target(pipeline: dict) -> None:
    pipeline["feature"]["spectral"]["n_bins"] = {"_target_": "numpy.load", "file": "evil.npy", "allow_pickle": True}


def schema_bump(info: dict) -> None:
    info["schema_version"] = 999


def unknown_kind(info: dict) -> None:
    info["detector"]["kind"] = "pickled_sklearn"


def no_feature_names(info: dict) -> None:
    del info["feature_names"]


# (model, how the folder is damaged, what the refusal must say)
TAMPERING = {
    "byte_in_model_ubj": ("xgboost", lambda f: flip_byte(f / "model.ubj"), r"model\.ubj does not match its checksum"),
    "byte_in_safetensors": ("logreg", lambda f: flip_byte(f / "logreg.safetensors", -1),
                            r"logreg\.safetensors does not match its checksum"),
    "byte_in_preprocess": ("xgboost", lambda f: flip_byte(f / "preprocess.safetensors", -1),
                           r"preprocess\.safetensors does not match"),
    "truncated_model_ubj": ("xgboost", lambda f: truncate(f / "model.ubj"), r"model\.ubj does not match .*truncated"),
    "truncated_pipeline": ("logreg", lambda f: truncate(f / "pipeline.yaml"), r"pipeline\.yaml does not match"),
    "deleted_model_ubj": ("xgboost", lambda f: (f / "model.ubj").unlink(), r"model\.ubj is missing"),
    "deleted_safetensors": ("logreg", lambda f: (f / "preprocess.safetensors").unlink(),
                            r"preprocess\.safetensors is missing"),
    "deleted_checksums": ("xgboost", lambda f: (f / "checksums.sha256").unlink(), r"not a negate model folder"),
    "threshold_edited": ("xgboost", lambda f: edit_json(f, "model.json", lambda i: i.update(threshold=0.01)),
                         r"model\.json does not match its checksum"),
    "checksum_digest_edited": ("xgboost", edit_digest, r"model\.json does not match its checksum"),
    "checksum_line_malformed": ("xgboost", lambda f: add_line(f, "not a checksum line"), r"malformed"),
    "checksum_path_outside": ("xgboost", lambda f: add_line(f, "0" * 64 + "  ../model.json"), r"malformed"),
    "model_json_not_covered": ("logreg", lambda f: drop_line(f, "model.json"), r"model\.json is not covered"),
    "schema_version": ("xgboost", lambda f: (edit_json(f, "model.json", schema_bump), rewrite_checksums(f)),
                       r"feature-schema version 999.*reads 1"),
    "feature_names": ("xgboost", lambda f: (edit_pipeline(f, other_feature_config), rewrite_checksums(f)),
                      r"feature names differ"),
    "family_version": ("logreg", lambda f: (edit_pipeline(f, lambda p: p["family_versions"].update(spectral="0")),
                                            rewrite_checksums(f)), r"feature code changed"),
    "pipeline_target_not_a_feature": ("xgboost", lambda f: (edit_pipeline(f, target_torch_load), rewrite_checksums(f)),
                                      r"'torch\.load' is not a registered feature family"),
    "pipeline_nested_target": ("logreg", lambda f: (edit_pipeline(f, nested_target), rewrite_checksums(f)),
                               r"nested _target_"),
    "pipeline_without_features": ("logreg", lambda f: (edit_pipeline(f, lambda p: p.pop("feature")),
                                                       rewrite_checksums(f)), r"pipeline cannot be built.*feature"),
    "unknown_detector_kind": ("logreg", lambda f: (edit_json(f, "model.json", unknown_kind), rewrite_checksums(f)),
                              r"unknown detector kind 'pickled_sklearn'"),
    "model_json_incomplete": ("logreg", lambda f: (edit_json(f, "model.json", no_feature_names),
                                                   rewrite_checksums(f)), r"feature_names"),
    "model_json_not_json": ("logreg", lambda f: ((f / "model.json").write_text("{oops"), rewrite_checksums(f)),
                            r"unreadable model metadata"),
}


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_saved_model_loads_and_reproduces_training_probabilities(trained, kind, tmp_path):
    folder, run_dir, cfg = trained[kind]
    model, families = load(copy_of(trained, kind, tmp_path))
    info = json.loads((folder / "model.json").read_text())
    assert model.threshold == info["threshold"] and model.feature_names == info["feature_names"]
    with open(run_dir / "test_predictions.csv", newline="") as fh:
        expected = {row["path"]: float(row["prob_synthetic"]) for row in csv.DictReader(fh)}
    records = [r for r in load_records(cfg.data)[0] if r.path in expected]
    kept, table = FeatureRunner(model.pipeline, cfg, families).features(records)
    assert len(kept) == len(expected) > 0
    prob = model.detector.predict_proba(table.X)[:, 1]
    np.testing.assert_allclose(prob, [expected[records[i].path] for i in kept], atol=1e-6)


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_damaged_model_folder_is_refused(trained, case, tmp_path):
    kind, damage, message = TAMPERING[case]
    folder = copy_of(trained, kind, tmp_path)
    load(folder)  # intact copy loads
    damage(folder)
    with pytest.raises(ModelFolderError, match=message) as err:
        load(folder)
    assert "\n" not in str(err.value) and str(folder) in str(err.value)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(ModelFolderError, match="model folder not found"):
        load(tmp_path / "nothing_here")


def is_safetensors(data: bytes) -> bool:
    if len(data) < 8:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    try:
        json.loads(data[8 : 8 + n])
    except ValueError:
        return False
    return 8 + n <= len(data)


def test_model_folder_holds_no_pickle(trained):
    pickle_magic = re.compile(rb"^\x80[\x02-\x05]")
    for folder, _, _ in trained.values():
        for path in folder.iterdir():
            data = path.read_bytes()
            assert path.suffix not in {".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".npy", ".ckpt"}, path
            assert not pickle_magic.match(data), f"{path} is a pickle"
            assert not data.startswith(b"PK\x03\x04"), f"{path} is a zip (torch.save / joblib archive)"
            if path.suffix == ".safetensors":
                assert is_safetensors(data), path
            elif path.suffix == ".ubj":
                assert data[:1] == b"{", path  # UBJSON object
            else:
                data.decode("utf-8")  # json, yaml, markdown, checksums: text


def test_loading_never_unpickles(trained, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a model folder")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    for kind in trained:
        model, _ = load(copy_of(trained, kind, tmp_path / kind))
        assert model.detector.predict_proba(np.zeros((1, len(model.feature_names)), np.float32)).shape == (1, 2)


def test_package_never_unpickles():
    """No pickle, joblib or unsafe torch.load anywhere in negate (the packaged encoder weights use weights_only)."""
    for path in PACKAGE_DIR.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|cloudpickle)\b", text, re.M), path
        assert "allow_pickle=True" not in text, path
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call.group(1), f"{path}: {call.group(0)}"
    for path in [PACKAGE_DIR / "model_folder.py", *(PACKAGE_DIR / "classifiers").glob("*.py")]:
        assert "torch.load" not in path.read_text(), path


def test_remote_code_is_off_by_default():
    configs = [p for group in ("encoder", "ae") for p in (Path(CONFIG_DIR) / group).glob("*.yaml")]
    with_key = {p: yaml.safe_load(p.read_text()) for p in configs if "trust_remote_code" in p.read_text()}
    with_key = {p: c for p, c in with_key.items() if isinstance(c, dict) and "trust_remote_code" in c}
    if not with_key:
        pytest.skip("no config has a trust_remote_code setting")
    for path, config in with_key.items():
        assert config["trust_remote_code"] is False, path
