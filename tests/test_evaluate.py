"""``evaluate`` on a saved model: it knows which images the model was fitted on, says so loudly when the evaluation
data overlaps them and reports the numbers on the images the model never saw; skipped images are reported once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import write_labelled_folder, write_manifest
from hydra import compose, initialize_config_dir

from negate.errors import InputError
from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers

register_resolvers()
TINY = ["feature=[spectral]", "encoder=none", "classifier=logreg", "data.reencode=none", "patches.count=1",
        "patches.size=64", "split.group_by=null", "eval.n_boot=20", "eval.robustness=false"]


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from negate.train import train

    root = tmp_path_factory.mktemp("overlap")
    data = write_labelled_folder(root / "data", n_per_class=10)
    metrics = train(compose_cfg("train", ["data=folder", f"data.path={data}", f"paths.output_dir={root / 'out'}",
                                          f"paths.models_dir={root / 'models'}", *TINY]))
    return root, data, Path(metrics["model_dir"]), metrics


def test_the_model_folder_lists_its_training_and_validation_images(trained):
    _, _, model, metrics = trained
    lines = (model / "training_images.sha256").read_text().splitlines()
    assert len(lines) == metrics["split"]["train"] + metrics["split"]["val"]
    assert {line.split("  ")[1] for line in lines} == {"train", "val"}
    assert any(line.endswith("  training_images.sha256") for line in (model / "checksums.sha256").read_text().splitlines())


def test_evaluating_on_training_images_warns_and_reports_the_unseen_ones(trained, tmp_path, capsys):
    from negate.evaluate import evaluate

    root, data, model, train_metrics = trained
    seen = train_metrics["split"]["train"] + train_metrics["split"]["val"]
    cfg = compose_cfg("evaluate", [f"ckpt={model}", "data=folder", f"data.path={data}",
                                   f"paths.output_dir={root / 'out'}", *TINY])
    metrics = evaluate(cfg, tmp_path / "same")
    err = capsys.readouterr().err
    assert f"WARNING: {seen} of the 20 evaluation images were used to fit this model" in err
    assert metrics["seen_in_training"]["n"] == seen and metrics["unseen"]["n"] == 20 - seen
    assert "**Warning:**" in (tmp_path / "same" / "report.md").read_text()

    other = write_labelled_folder(tmp_path / "other", n_per_class=4, seed=11)
    cfg = compose_cfg("evaluate", [f"ckpt={model}", "data=folder", f"data.path={other}",
                                   f"paths.output_dir={root / 'out'}", *TINY])
    metrics = evaluate(cfg, tmp_path / "new")
    assert "WARNING" not in capsys.readouterr().err
    assert metrics["seen_in_training"]["n"] == 0 and "unseen" not in metrics and "warnings" not in metrics


def test_a_skipped_image_is_reported_once_with_a_summary(tmp_path, caplog):
    from negate.train import train

    data = write_labelled_folder(tmp_path / "data", n_per_class=8)
    manifest = write_manifest(data)
    missing = data / "real" / "gone.jpg"
    manifest.write_text(manifest.read_text() + "real/gone.jpg\treal\treal\treal_src0\n")
    with caplog.at_level(logging.INFO):
        train(compose_cfg("train", ["data=manifest", f"data.path={manifest}", f"paths.output_dir={tmp_path / 'out'}",
                                    f"paths.models_dir={tmp_path / 'models'}", *TINY]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum(str(missing) in w for w in warnings) == 1, warnings
    assert any(w.startswith("1 skipped, see ") and w.endswith("skipped.csv") for w in warnings), warnings


def test_a_manifest_of_missing_files_is_one_input_error(tmp_path):
    from negate.train import train

    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text("path\tlabel\na.jpg\treal\nb.png\tfake\n")
    with pytest.raises(InputError, match=r"none of the 2 images .* could be read; first: .*a\.jpg: .*file not found"):
        train(compose_cfg("train", ["data=manifest", f"data.path={manifest}", f"paths.output_dir={tmp_path / 'out'}",
                                    f"paths.models_dir={tmp_path / 'models'}", *TINY]))
    assert (tmp_path / "out" / "runs" / "library" / "skipped.csv").read_text().count("file not found") == 2
