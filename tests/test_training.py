"""train() end to end through the library: format-neutral views, augmentation, LOSO and the robustness sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from negate.protocol.loso import leave_one_group_out
from negate.classifiers import LogRegDetector
from negate.paths import CONFIG_DIR
from negate.pipeline import reencode_view, register_resolvers
from negate.train import train

register_resolvers()


def cfg_for(folder, out, *overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[
            "data=folder", f"data.path={folder}", f"paths.output_dir={out}", f"paths.models_dir={out}/models",
            "feature=[spectral]",
            "encoder=none", "classifier=xgboost", "patches.size=64", "patches.count=1", "eval.n_boot=20",
            "classifier.n_estimators=30", *overrides])


def test_format_neutral_augmented_training_with_loso_and_robustness(image_folder, tmp_path):
    cfg = cfg_for(image_folder, tmp_path, "data.reencode=jpeg90", "augment=robust", "augment.views=1",
                  "eval.loso=true", "eval.robustness=true", "split.group_by=null")
    metrics = train(cfg)
    assert 0 <= metrics["loso"]["overall"]["auroc"] <= 1 and 0 <= metrics["loso"]["jpeg75"]["auroc"] <= 1
    assert set(metrics["robustness"]) >= {"jpeg:75", "downscale:0.5", "webp:80"}
    card = (tmp_path / "models").glob("*/MODEL_CARD.md")
    assert "reencode:jpeg90" in next(card).read_text()
    views = {json.loads(p.read_text())["names"][0] for p in tmp_path.glob("cache/spectral-*/family.json")}
    assert views  # one cache folder per family config, shared by every view
    keys = np.concatenate([np.load(s)["keys"] for s in tmp_path.glob("cache/spectral-*/shard-*.npz")])
    assert any(k.endswith("|reencode:jpeg90") for k in keys)
    assert any("jpeg:75+reencode:jpeg90" in k for k in keys)  # the attack comes before the normalisation


@pytest.mark.parametrize(("value", "view"), [(None, ""), ("none", ""), ("jpeg90", "reencode:jpeg90"),
                                             ("reencode:webp80", "reencode:webp80")])
def test_reencode_values(value, view):
    assert reencode_view(value) == view


def test_leave_one_group_out_never_trains_on_the_held_out_group():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 30).astype(str)
    y = np.tile([0, 1], 90)
    X = rng.normal(size=(180, 4)) + y[:, None] * 1.5
    X[groups == "5"] += 100  # a group unlike any other: if it leaked into training, its rows would be scored well

    class Recorder(LogRegDetector):
        seen: list = []

        def fit(self, X_, y_, X_val=None, y_val=None):
            Recorder.seen.append(X_.max())
            return super().fit(X_, y_, X_val, y_val)

    out = leave_one_group_out(X, y, groups, Recorder, {"method": "youden"})
    assert not np.isnan(out["prob"]).any() and len(out["folds"]) == 6
    assert min(Recorder.seen) < 50  # the fold holding group 5 out never saw it


def test_aerecon_taef2_recipe_trains_and_infers_on_tiny_data(image_folder, tmp_path):
    """``experiment=aerecon_taef2``: the TAEF2 round-trip columns (random weights here) feed a logreg end to end."""
    from negate.model_folder import load_model

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "experiment=aerecon_taef2", "data=folder", f"data.path={image_folder}", f"paths.output_dir={tmp_path}",
            f"paths.models_dir={tmp_path}/models", "ae.pretrained=false", "patches.size=64", "eval.n_boot=20"])
    assert cfg.ae.name == "taef2" and not cfg.get("feature") and cfg.encoder.name == "none"
    metrics = train(cfg)
    assert 0.0 <= metrics["test"]["auroc"] <= 1.0
    (folder,) = list((tmp_path / "models").iterdir())
    assert any(c.startswith("aerecon.hp_l1_rel") for c in load_model(folder).feature_names)
