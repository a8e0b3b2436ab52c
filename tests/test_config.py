"""Every option of every config group composes, and the objects it names can be built."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from negate.classifiers import build_detector
from negate.paths import CONFIG_DIR
from negate.pipeline import pipeline_from_cfg, register_resolvers
from negate.plugins import FEATURES

register_resolvers()
GROUPS = sorted(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir())
ENTRY_CONFIGS = ("train", "infer", "evaluate", "pretrain")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.mark.parametrize("name", ENTRY_CONFIGS)
def test_entry_configs_compose(name):
    cfg = compose_cfg(name, ["path=x"] if name == "infer" else [])
    assert cfg.task == name
    assert cfg.paths.cache_dir.endswith("cache")


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    override = f"{group}=[{option}]" if group == "feature" else f"{group}={option}"
    extra = ["data.path=somewhere"] if group == "data" and option != "sample" else []
    cfg = compose_cfg("train", [override, *extra])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if group == "feature":
        assert list(resolved["feature"]) == [option]
    elif group == "experiment":  # a named recipe: global overrides, no key of its own
        assert "experiment" not in resolved and resolved["finetune"]["name"] in ("none", "effnet_lite0")
    else:
        assert resolved[group] is not None


def test_default_recipe_builds_offline_and_pipeline_is_plain_data():
    from negate.pipeline import build_families

    cfg = compose_cfg("train", [])
    pipeline = pipeline_from_cfg(cfg)
    assert pipeline["feature"] == {} and pipeline["reencode"] == "reencode:jpeg90"
    assert Path(cfg.data.path).name == "MANIFEST.tsv" and Path(cfg.data.path).exists()
    (family,) = build_families(pipeline)  # the packaged EfficientNet-Lite0 weights: no hub access
    assert family.name == "embedding" and family.dim == 2304
    assert build_detector(cfg.classifier).kind == "logreg"


@pytest.mark.parametrize("option", options("feature"))
def test_feature_options_instantiate(option):
    cfg = compose_cfg("train", [f"feature=[{option}]"])
    family = FEATURES.build(option, **cfg.feature[option])
    assert family.name == option


@pytest.mark.parametrize("option", options("classifier"))
def test_classifier_options_instantiate(option):
    detector = build_detector(compose_cfg("train", [f"classifier={option}"]).classifier)
    assert detector.kind == {"logit": "zero_shot"}.get(option, option)  # logit: the zero-shot score of a logit


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options_name_a_lightning_trainer(option):
    cfg = compose_cfg("train", [f"trainer={option}"])
    assert cfg.trainer._target_ == "lightning.Trainer"
    if option != "gpu":  # the gpu option needs a CUDA device to instantiate
        trainer = instantiate(cfg.trainer, accelerator="cpu", devices=1 if option == "cpu" else 2)
        assert trainer.num_devices == (1 if option == "cpu" else 2)


def test_multi_feature_selection_and_override():
    cfg = compose_cfg("train", ["feature=[spectral,lbp,dct]", "patches.size=128"])
    assert list(cfg.feature) == ["spectral", "lbp", "dct"]
    assert cfg.patches.size == 128


def test_null_family_is_off_and_the_recipe_signature_follows_the_recipe():
    from negate.pipeline import build_families, protocol_signature

    cfg = compose_cfg("train", ["encoder=effnet_lite0", "feature=[]"])
    assert [f.name for f in build_families(pipeline_from_cfg(cfg))] == ["embedding"]
    assert "warpad" not in pipeline_from_cfg(cfg)["encoder"]["families"]  # null = off = absent
    assert protocol_signature(cfg) == protocol_signature(compose_cfg("evaluate", ["encoder=effnet_lite0", "feature=[]"]))
    for change in ("classifier=xgboost", "data.reencode=jpeg95", "encoder.families.warpad={alpha: 0.1}"):
        other = compose_cfg("train", ["encoder=effnet_lite0", "feature=[]", change])
        assert protocol_signature(other) != protocol_signature(cfg), change
    # a finetune key at its neutral value leaves the signature of rows recorded before the key existed
    tuned = compose_cfg("evaluate", ["experiment=finetuned_no_aligned"])
    assert tuned.finetune.patches_per_image == 1
    without = OmegaConf.create(OmegaConf.to_container(tuned))
    del without.finetune["patches_per_image"]
    assert protocol_signature(without) == protocol_signature(tuned)
    assert protocol_signature(compose_cfg("evaluate", ["experiment=finetuned_no_aligned",
                                                       "finetune.patches_per_image=4"])) != protocol_signature(tuned)
    # likewise ensemble.combine at its first rule, mean_logit; another rule is another recipe
    ensemble = compose_cfg("evaluate", ["experiment=ensemble"])
    assert ensemble.ensemble.combine == "mean_logit"
    without = OmegaConf.create(OmegaConf.to_container(ensemble))
    del without.ensemble["combine"]
    assert protocol_signature(without) == protocol_signature(ensemble)
    assert protocol_signature(compose_cfg("evaluate", ["experiment=ensemble", "ensemble.combine=mean_z"])) \
        != protocol_signature(ensemble)


EXPERIMENTS = options("experiment")


def test_the_named_recipes_are_the_readme_rows():
    assert {"default", "default_aligned", "finetuned", "finetuned_no_aligned", "handcrafted", "handcrafted_logreg",
            "handcrafted_aligned"} <= set(EXPERIMENTS)


def test_handcrafted_logreg_is_the_recorded_handcrafted_logreg_row():
    """The named recipe and ``experiment=handcrafted classifier=logreg classifier.C=0.01`` (the README row measured
    before it had a name) are the same recipe, so its recorded protocol rows still match."""
    from negate.pipeline import protocol_signature

    named = compose_cfg("evaluate", ["experiment=handcrafted_logreg"])
    assert named.classifier.kind == "logreg" and named.classifier.C == 0.01 and named.data.reencode == "none"
    spelled = compose_cfg("evaluate", ["experiment=handcrafted", "classifier=logreg", "classifier.C=0.01"])
    assert protocol_signature(named) == protocol_signature(spelled)


def test_every_experiment_prints_its_job_config(tmp_path):
    """``negate train --cfg job experiment=NAME`` for every named recipe (one process, run from another directory),
    and the same recipe composes and resolves for evaluate (protocol=cv) and pretrain."""
    import os
    import subprocess
    import sys

    import yaml

    loop = ("import sys\nfrom negate.cli import main\nfor name in sys.argv[1:]:\n"
            "    print(f'--- {name}', flush=True)\n    main(['train', '--cfg', 'job', f'experiment={name}'])\n")
    proc = subprocess.run([sys.executable, "-c", loop, *EXPERIMENTS], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = {part.split("\n", 1)[0]: yaml.safe_load(part.split("\n", 1)[1]) for part in proc.stdout.split("--- ")[1:]}
    assert list(jobs) == EXPERIMENTS
    for experiment, job in jobs.items():
        assert job["task"] == "train" and job["protocol"] == "holdout" and "hydra" not in job
        assert (job["finetune"]["name"] != "none") == experiment.startswith("finetuned"), experiment
        for name, extra in (("evaluate", ["protocol=cv"]), ("pretrain", [])):
            cfg = compose_cfg(name, [f"experiment={experiment}", *extra])
            OmegaConf.to_container(cfg, resolve=True)
            assert cfg.finetune.name == job["finetune"]["name"] and cfg.classifier == job["classifier"]


def test_the_protocol_group_holds_split_threshold_report_and_cv_keys():
    """``split``/``threshold``/``eval`` (train and evaluate) and ``cv`` (protocol=cv) live in configs/protocol only."""
    root = Path(CONFIG_DIR)
    for top in ("train", "evaluate", "pretrain"):
        keys = set((OmegaConf.load(root / f"{top}.yaml")))
        assert not keys & {"split", "threshold", "cv", "protocol"}, top
    train, holdout = compose_cfg("train", []), compose_cfg("evaluate", [])
    cv = compose_cfg("evaluate", ["protocol=cv", "cv.group_by=family", "split.group_by=null",
                                  "threshold.target_fpr=0.01", "eval.loso=true"])
    assert train.protocol == holdout.protocol == "holdout" and cv.protocol == "cv"
    assert "cv" not in train and "cv" not in holdout and cv.cv.group_by == "family" and cv.cv.folds == 5
    assert train.split == holdout.split and train.threshold == holdout.threshold
    assert cv.split.group_by is None and cv.threshold.target_fpr == 0.01 and cv.eval.loso
    assert not train.eval.robustness and holdout.eval.robustness and cv.eval.robustness  # evaluate's own default
