"""`experiment=ensemble`: members fitted on one split, the mean of their logits, one checksummed model folder holding
each member's folder, and `negate infer` / `negate evaluate` through it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers

register_resolvers()

SMALL = "'patches.size=64','patches.count=1'"
# a handcrafted XGBoost member and a tiny fine-tuned member (random init, one epoch): both kinds of member folder
MEMBERS = [
    "ensemble.members=[handcrafted,finetuned_no_aligned]",
    f"+ensemble.overrides.handcrafted=[{SMALL},'classifier.n_estimators=20']",
    "++ensemble.overrides.finetuned_no_aligned=['finetune.pretrained=false','finetune.patch=64','finetune.grid=4',"
    "'finetune.max_epochs=1','finetune.num_workers=0','finetune.batch_size=8','finetune.trainer.accelerator=cpu']",
]


def _train_cfg(tmp_path, image_folder, extra=()):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[
            "data=folder", f"data.path={image_folder}", f"paths.output_dir={tmp_path}",
            f"paths.models_dir={tmp_path}/models", "experiment=ensemble", *MEMBERS, "eval.n_boot=10",
            "split.group_by=null", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_folder):
    from negate.train import train

    tmp_path = tmp_path_factory.mktemp("ensemble")
    metrics = train(_train_cfg(tmp_path, image_folder))
    return tmp_path, metrics


def test_member_configs_take_the_callers_data_and_their_own_recipe(tmp_path, image_folder):
    from negate.ensemble import ensemble_members, member_cfg

    cfg = _train_cfg(tmp_path, image_folder)
    assert ensemble_members(cfg) == ["handcrafted", "finetuned_no_aligned"]
    hand = member_cfg(cfg, "handcrafted")
    assert sorted(hand.feature) == ["dct", "laplacian", "npr", "spectral"] and hand.classifier.n_estimators == 20
    assert hand.data.path == str(image_folder) and hand.data.reencode == "none" and hand.patches.size == 64
    ft = member_cfg(cfg, "finetuned_no_aligned")
    assert ft.finetune.aligned is None and ft.finetune.max_epochs == 1 and ft.encoder.name == "none"
    # format_match: the caller's for every member, unless a member's overrides set its own
    cfg.format_match.share = 0.5
    cfg.ensemble.overrides.handcrafted = [*cfg.ensemble.overrides.handcrafted, "format_match.share=1"]
    assert member_cfg(cfg, "handcrafted").format_match.share == 1.0
    assert member_cfg(cfg, "finetuned_no_aligned").format_match.share == 0.5
    cfg.ensemble.members = ["handcrafted"]
    with pytest.raises(ValueError, match="at least two"):
        ensemble_members(cfg)
    cfg.ensemble.members = ["handcrafted", "no_such_recipe"]
    with pytest.raises(ValueError, match="not a recipe"):
        member_cfg(cfg, "no_such_recipe")


def test_ensemble_folder_holds_complete_members_and_scores_their_mean_logit(trained, image_folder):
    from negate.model_folder import load_checked_model
    from negate.model_folder import ModelFolderError

    tmp_path, metrics = trained
    folder = tmp_path / "moved"
    shutil.copytree(metrics["model_dir"], folder)  # any copy of the folder works
    for member in ("member_handcrafted", "member_finetuned_no_aligned"):
        assert (folder / member / "checksums.sha256").is_file()
    assert (folder / "member_finetuned_no_aligned" / "detector.safetensors").is_file()
    assert "training_images.sha256" in (folder / "checksums.sha256").read_text()
    card = (folder / "MODEL_CARD.md").read_text()
    assert "mean of the members' logits" in card and "Training data" in card

    model, members = load_checked_model(str(folder), [])
    assert model.detector.kind == "ensemble" and list(members) == ["handcrafted", "finetuned_no_aligned"]
    # the ensemble's probability is the sigmoid of the members' mean logit, each member scoring its own columns
    from negate.ensemble import make_runner
    from negate.data.records import ImageRecord

    cfg = _train_cfg(tmp_path, image_folder)
    records = [ImageRecord(str(p)) for p in sorted(image_folder.rglob("*.png"))[:4]]
    kept, table = make_runner(model.pipeline, cfg, members, progress=False).features(records)
    prob = model.detector.predict_proba(table.X)[:, 1]
    logits = []
    for m, fams in members.values():
        m_kept, m_table = make_runner(m.pipeline, cfg, fams, progress=False).features(records)
        assert m_kept == kept
        p = m.detector.predict_proba(m_table.X)[:, 1]
        logits.append(np.log(p / (1 - p)))
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-np.mean(logits, axis=0))), rtol=1e-5)

    # a changed member file is refused by the member's checksums; a swapped member checksum file by the ensemble's
    weights = folder / "member_finetuned_no_aligned" / "detector.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-4] + b"\0\0\0\1")
    with pytest.raises(ModelFolderError, match="detector.safetensors"):
        load_checked_model(str(folder), [])
    weights.write_bytes(original)
    sums = folder / "member_handcrafted" / "checksums.sha256"
    sums.write_text(sums.read_text() + "\n")
    with pytest.raises(ModelFolderError, match="member 'handcrafted'"):
        load_checked_model(str(folder), [])


def test_infer_and_evaluate_through_an_ensemble_folder(trained, image_folder):
    import subprocess
    import sys

    tmp_path, metrics = trained
    out = subprocess.run([sys.executable, "-m", "negate.cli", "infer", str(image_folder), f"ckpt={metrics['model_dir']}",
                          "output=json", f"paths.output_dir={tmp_path}"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    assert rows and all(r["verdict"] in ("synthetic", "human", "uncertain") for r in rows)
    assert all(0 <= r["prob_synthetic"] <= 1 for r in rows)

    from negate.evaluate import evaluate

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[
            f"ckpt={metrics['model_dir']}", "data=folder", f"data.path={image_folder}", f"paths.output_dir={tmp_path}",
            "eval.n_boot=10", "eval.robustness=false"])
    report = evaluate(cfg, tmp_path / "evaluate")
    assert 0 <= report["test"]["auroc"] <= 1
    assert report["seen_in_training"]["n"] > 0  # the ensemble folder lists the images its members learned from


def test_the_shipped_model_is_the_protocol_ensemble():
    """The model inside the package is the recipe the family protocol chose, and its card says what it learned from."""
    from negate.model_folder import load_checked_model
    from negate.paths import SHIPPED_MODEL_DIR

    if not (SHIPPED_MODEL_DIR / "model.json").is_file():
        pytest.skip("no shipped model in this checkout")
    model, members = load_checked_model("shipped", [])
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=ensemble"])
    assert model.detector.kind == "ensemble" and list(members) == list(cfg.ensemble.members)
    assert "handcrafted_logreg" in members  # the recipe the protocol tables chose (README, "Choice")
    card = (SHIPPED_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert "content-only baseline on the same folds" in card and "their licences" in card


def test_the_shipped_card_quotes_the_recorded_protocol_rows():
    """Re-measuring the shipped recipe (scripts/record_protocol.py) must be carried into the shipped card."""
    from negate.paths import SHIPPED_MODEL_DIR
    from negate.train import measured_protocol

    if not (SHIPPED_MODEL_DIR / "model.json").is_file():
        pytest.skip("no shipped model in this checkout")
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=ensemble", "data=manifest"])
    lines = measured_protocol(cfg).splitlines()
    assert len(lines) == 2 and "leave-one-family-out" in lines[0] and "sources held out" in lines[1]
    card = (SHIPPED_MODEL_DIR / "MODEL_CARD.md").read_text()
    for line in lines:
        assert line in card


def test_a_card_line_leaves_out_the_figures_a_protocol_run_did_not_measure():
    """A row recorded without cv.pairs has pairs_auroc null: the card says nothing of pairs instead of crashing the
    training run at its very end."""
    from negate.train import fold_protocol_line

    row = {"protocol": "sources held out in 5 grouped folds", "data": "dev/MANIFEST.tsv", "auroc": 0.7585,
           "content_baseline_auroc": 0.694, "auroc_jpeg75": 0.748, "auroc_downscale0.5": 0.741, "auroc_photo": 0.728,
           "camera_fpr": 0.059, "pairs_auroc": 0.6541, "date": "2026-11-30", "command": "negate evaluate x"}
    assert fold_protocol_line(row) == (
        "- sources held out in 5 grouped folds on dev/MANIFEST.tsv: AUROC 0.758 (content-only baseline on the same "
        "folds 0.694), after JPEG q75 0.748, after 0.5x downscale 0.741, photo-content rows 0.728, camera-photo FPR at "
        "fold thresholds 0.059, content-matched pairs AUROC 0.654; measured 2026-11-30 with `negate evaluate x`")
    with_intervals = fold_protocol_line({**row, "auroc_ci": [0.70, 0.81], "margin_ci": [0.01, 0.12]})
    assert ("AUROC 0.758 (95% interval 0.700-0.810 with families and sources redrawn; content-only baseline on the "
            "same folds 0.694; margin +0.064, interval +0.010 to +0.120), after JPEG q75") in with_intervals
    line = fold_protocol_line({**row, "pairs_auroc": None, "content_baseline_auroc": None})
    assert "pairs" not in line and "baseline" not in line
    assert line.startswith("- sources held out in 5 grouped folds on dev/MANIFEST.tsv: AUROC 0.758, after JPEG q75 0.748")


def test_mean_z_standardises_each_member_by_its_validation_reals():
    from sklearn.linear_model import LogisticRegression

    from negate.ensemble import EnsembleDetector, real_logit_scales

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + X[:, 1] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    loud = LogisticRegression(C=100).fit(X[:, :1] * 10, y)  # a member whose logits are ten times wider
    quiet = LogisticRegression().fit(X[:, 1:], y)
    Xe = np.column_stack([X[:, 0] * 10, X[:, 1]])
    plain = EnsembleDetector({"loud": loud, "quiet": quiet}, [1, 1])
    scales = real_logit_scales(plain.member_logits(Xe), y)
    assert set(scales) == {"loud", "quiet"} and all(s > 0 for _, s in scales.values())
    z = EnsembleDetector({"loud": loud, "quiet": quiet}, [1, 1], scales)
    logits = plain.member_logits(Xe)
    expected = np.mean([(logits[m] - c) / s for m, (c, s) in scales.items()], axis=0)
    np.testing.assert_allclose(z.predict_proba(Xe)[:, 1], 1 / (1 + np.exp(-expected)), rtol=1e-9)
    # standardised, each member's reals sit at mean 0 and standard deviation 1 whatever its raw scale
    for m, (c, s) in scales.items():
        zr = (logits[m][y == 0] - c) / s
        assert abs(zr.mean()) < 1e-9 and abs(zr.std() - 1) < 1e-9
    assert z.params()["combine"] == "mean_z" and z.state()["scales"]["loud"] == list(scales["loud"])
    with pytest.raises(ValueError, match="scales name"):
        EnsembleDetector({"loud": loud, "quiet": quiet}, [1, 1], {"loud": (0.0, 1.0)})
    with pytest.raises(ValueError, match="two validation reals"):
        real_logit_scales(logits, np.ones_like(y))


def test_max_z_takes_the_highest_standardised_member_logit():
    from sklearn.linear_model import LogisticRegression

    from negate.ensemble import EnsembleDetector, real_logit_scales

    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 2))
    y = (X[:, 0] > 0).astype(int)
    members = {"a": LogisticRegression().fit(X[:, :1], y), "b": LogisticRegression().fit(X[:, 1:], y)}
    scales = real_logit_scales(EnsembleDetector(members, [1, 1]).member_logits(X), y)
    top = EnsembleDetector(members, [1, 1], scales, reduce="max")
    logits = top.member_logits(X)
    expected = np.max([(logits[m] - c) / s for m, (c, s) in scales.items()], axis=0)
    np.testing.assert_allclose(top.predict_proba(X)[:, 1], 1 / (1 + np.exp(-expected)), rtol=1e-9)
    assert top.params()["combine"] == "max_z"
    with pytest.raises(ValueError, match="max with scales"):
        EnsembleDetector(members, [1, 1], reduce="max")


def test_stack_z_learns_member_weights_on_the_validation_split():
    from sklearn.linear_model import LogisticRegression

    from negate.ensemble import EnsembleDetector, real_logit_scales, stack_weights

    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] + rng.normal(scale=0.3, size=300) > 0).astype(int)  # only the first member's column carries the label
    members = {"useful": LogisticRegression().fit(X[:, :1], y), "noise": LogisticRegression().fit(X[:, 1:], y)}
    logits = EnsembleDetector(members, [1, 1]).member_logits(X)
    scales = real_logit_scales(logits, y)
    weights = stack_weights(logits, y, scales)
    assert set(weights) == {"useful", "noise", "bias"} and weights["useful"] > 5 * abs(weights["noise"])
    stacked = EnsembleDetector(members, [1, 1], scales, reduce="stack", weights=weights)
    z = weights["bias"] + sum(weights[m] * (logits[m] - c) / s for m, (c, s) in scales.items())
    np.testing.assert_allclose(stacked.predict_proba(X)[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-9)
    assert stacked.params()["combine"] == "stack_z" and stacked.state()["weights"] == weights
    with pytest.raises(ValueError, match="stack with scales and weights"):
        EnsembleDetector(members, [1, 1], scales, reduce="stack")


@pytest.mark.parametrize("combine", ["mean_z", "max_z", "stack_z"])
def test_a_standardised_ensemble_folder_keeps_its_scales_and_rule(tmp_path, image_folder, combine):
    from negate.model_folder import load_checked_model
    from negate.train import train

    metrics = train(_train_cfg(tmp_path, image_folder, [f"ensemble.combine={combine}"]))
    info = json.loads((Path(metrics["model_dir"]) / "model.json").read_text())
    scales = info["detector"]["state"]["scales"]
    assert set(scales) == {"handcrafted", "finetuned_no_aligned"} and info["detector"]["params"]["combine"] == combine
    model, _ = load_checked_model(str(metrics["model_dir"]), [])
    assert model.detector.scales == {m: tuple(v) for m, v in scales.items()}
    assert model.detector.reduce == {"mean_z": "mean", "max_z": "max", "stack_z": "stack"}[combine]
    assert (model.detector.weights is not None) == (combine == "stack_z")
    card = (Path(metrics["model_dir"]) / "MODEL_CARD.md").read_text()
    assert {"mean_z": "mean of the members' logits, each standardised", "max_z": "highest of the members' logits",
            "stack_z": "the weights fitted on the validation split"}[combine] in card
    assert model.pipeline["ensemble"]["combine"] == combine
