"""The plugin registries (negate.plugins): registry behaviour, registry <-> config group agreement, every registered
name built and run, and a new detector added with one module and one YAML, trained and used for inference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import negate.classifiers
from negate.classifiers import build_detector, load_detector
from negate.features.deep import encoder_family_names
from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers
from negate.plugins import (
    AUGMENTATIONS,
    AUTOENCODERS,
    CLASSIFIERS,
    DATA_SOURCES,
    ENCODERS,
    FEATURES,
    LOGGERS,
    REGISTRIES,
    Registry,
    describe,
)

register_resolvers()
CONFIGS = Path(CONFIG_DIR)


def group_yamls(group: str) -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text()) or {} for p in sorted((CONFIGS / group).glob("*.yaml"))}


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


# ------------------------------------------------------------------------------------------------ the registry


class Thing:
    def __init__(self, size: int = 1):
        self.size = size


def test_register_build_list_and_refuse_a_clash():
    reg = Registry("thing", "things", key="kind")
    reg.register("small")(Thing)
    assert reg.names() == ["small"] and "small" in reg and reg.get("small") is Thing
    assert reg.build("small").size == 1
    assert reg.build({"kind": "small", "size": 3}).size == 3
    assert reg.build(OmegaConf.create({"kind": "small", "size": 3}), size=5).size == 5  # kwargs win
    reg.register("small")(Thing)  # the same object again (a module imported twice) is fine

    class Other:
        pass

    with pytest.raises(ValueError, match="already registered"):
        reg.register("small")(Other)


def test_unknown_names_list_the_known_ones_and_suggest_the_closest():
    with pytest.raises(KeyError, match=r"did you mean 'xgboost'.*logreg, xgboost, zero_shot"):
        CLASSIFIERS.get("xgbost")
    with pytest.raises(ValueError, match="needs `kind: <name>`"):
        CLASSIFIERS.build({"C": 1.0})


def test_legacy_target_must_name_a_registered_object():
    # configs and model folders written before the registry named classes by _target_; still read, never imported
    assert CLASSIFIERS.build({"_target_": "negate.classifiers.LogRegDetector", "C": 0.5}).params()["C"] == 0.5
    assert CLASSIFIERS.name_of_target("negate.classifiers.logreg.LogRegDetector") == "logreg"
    with pytest.raises(ValueError, match="not a registered detector"):
        CLASSIFIERS.build({"_target_": "torch.load", "f": "evil.pt"})
    with pytest.raises(ValueError, match="nested _target_"):
        CLASSIFIERS.build({"kind": "logreg", "C": {"_target_": "numpy.load", "file": "x"}})


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.group)
def test_names_read_from_the_source_are_the_registered_ones(registry):
    assert registry.declared_names() == registry.names()


def test_describe_lists_every_kind_for_the_help_text_without_importing_torch():
    probe = "import sys; from negate.plugins import describe; describe(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
    lines = describe()
    assert [line.split(":")[0] for line in lines] == [r.group for r in REGISTRIES]
    assert "classifier: logreg, xgboost, zero_shot" in lines
    assert any(line.startswith("feature: ") and "spectral" in line and "embedding" in line for line in lines)


# ------------------------------------------------------------------ every name has a YAML, every YAML a name


@pytest.mark.parametrize("registry", [CLASSIFIERS, DATA_SOURCES, LOGGERS, AUGMENTATIONS], ids=lambda r: r.group)
def test_every_yaml_selects_a_registered_name_and_every_name_has_a_yaml(registry):
    selected = {cfg.get(registry.key) for cfg in group_yamls(registry.group).values()}
    assert selected == set(registry.names())


@pytest.mark.parametrize("registry", [ENCODERS, AUTOENCODERS], ids=lambda r: r.group)
def test_model_specs_are_exactly_the_yamls_of_their_group(registry):
    yamls = {name: cfg for name, cfg in group_yamls(registry.group).items() if name != "none"}
    assert set(yamls) == set(registry.names())
    assert all(cfg["name"] == name for name, cfg in yamls.items())


def test_every_feature_family_is_selected_by_a_yaml():
    """Handcrafted families by ``feature=<name>``, encoder-backed ones under an encoder's ``families:``, the
    reconstruction family by every autoencoder (``family:``)."""
    handcrafted = set(group_yamls("feature"))
    encoder_fed = {f for cfg in group_yamls("encoder").values() for f in (cfg.get("families") or {})}
    assert encoder_fed == set(encoder_family_names())
    assert all("family" in cfg for name, cfg in group_yamls("ae").items() if name != "none")
    assert handcrafted | encoder_fed | {"aerecon"} == set(FEATURES.names())
    assert not handcrafted & encoder_fed


# --------------------------------------------------------------------------------------- every name builds


TINY_VIT = {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32}
TINY_KL = {"block_out_channels": [8, 16], "latent_channels": 4, "norm_num_groups": 4, "layers_per_block": 1,
           "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2}


def tiny_options(name: str) -> dict:
    """Constructor arguments that give a family small random-weight models; the handcrafted ones take none."""
    from negate.features.aerecon import AEReconFamily
    from negate.features.embedding import EncoderFamily

    cls = FEATURES.get(name)
    if issubclass(cls, EncoderFamily):
        return {"encoder": {"name": "dinov3", "model_kwargs": TINY_VIT}, "pretrained": False, "device": "cpu"}
    if issubclass(cls, AEReconFamily):
        return {"ae": {"name": "zimage", "config": TINY_KL}, "pretrained": False, "device": "cpu", "blocks": 2}
    return {}


@pytest.fixture(scope="module")
def photo_patches() -> torch.Tensor:
    from skimage import data

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    return torch.stack([img[:, y : y + 64, x : x + 64] for y, x in ((0, 0), (200, 200), (300, 120))])


@pytest.mark.parametrize("name", FEATURES.names())
def test_every_feature_family_builds_and_runs(name, photo_patches):
    family = FEATURES.build(name, **tiny_options(name)).eval()
    assert family.name == name
    with torch.no_grad():
        out = family(photo_patches)
    assert out.shape == (3, family.dim) and torch.isfinite(out).all()
    assert len(set(family.feature_names())) == family.dim


def yaml_selecting(registry: Registry, name: str) -> str:
    return next(option for option, cfg in group_yamls(registry.group).items() if cfg.get(registry.key) == name)


@pytest.mark.parametrize("name", CLASSIFIERS.names())
def test_every_detector_fits_predicts_and_reloads(name, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] + rng.normal(0, 0.3, 120) > 0).astype(int)
    columns = ["embedding.0000.mean", "warpad.score.mean", "a.mean", "b.mean"]
    cfg = compose_train(f"classifier={yaml_selecting(CLASSIFIERS, name)}").classifier
    det = build_detector(cfg, columns).fit(X[:80], y[:80], X[80:], y[80:])
    p = det.predict_proba(X)
    assert det.kind == name and p.shape == (120, 2) and np.allclose(p.sum(1), 1)
    det.save(tmp_path)
    again = load_detector(tmp_path, det.kind, det.params(), det.state())
    np.testing.assert_allclose(again.predict_proba(X), p, atol=1e-6)


@pytest.mark.parametrize("name", DATA_SOURCES.names())
def test_every_data_source_loads_the_test_images(name, image_folder, manifest):
    path = {"folder": image_folder, "manifest": manifest}[name]
    cfg = compose_train(f"data={yaml_selecting(DATA_SOURCES, name)}", f"data.path={path}").data
    records, skipped = DATA_SOURCES.get(name)(cfg)
    assert len(records) == 24 and {r.label for r in records} == {0, 1} and not skipped


@pytest.mark.parametrize("name", LOGGERS.names())
def test_every_run_logger_logs(name, tmp_path, monkeypatch):
    from negate.run_logger import create_run_logger

    monkeypatch.setenv("WANDB_MODE", "disabled")  # wandb's own offline run is covered by test_entrypoints
    cfg = compose_train(f"logger={yaml_selecting(LOGGERS, name)}").logger
    logger = create_run_logger(cfg, tmp_path, {"seed": 0})
    logger.log_metrics({"test": {"auroc": 0.5}})
    logger.finish()
    assert type(logger) is LOGGERS.get(name)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_every_augmentation_draws_parseable_views(name):
    from negate.data.perturb import parse_view

    augmentation = AUGMENTATIONS.build(compose_train(f"augment={yaml_selecting(AUGMENTATIONS, name)}").augment)
    views = [augmentation.view(seed) for seed in range(20)]
    assert views == [augmentation.view(seed) for seed in range(20)]
    assert all(isinstance(parse_view(v), list) for v in views)
    assert augmentation.views >= 0


# ------------------------------------------------------------------ a new detector: one module + one YAML

NEAREST_CENTROID = '''
"""A nearest-centroid detector: standardised features, softmax over negative squared distances."""

import numpy as np
from safetensors.numpy import load_file, save_file

from negate.classifiers.base import Detector, check_X, check_y, register_detector


@register_detector("nearest_centroid")
class NearestCentroidDetector(Detector):
    def __init__(self, temperature: float = 1.0):
        self.temperature = float(temperature)

    def params(self):
        return {"temperature": self.temperature}

    def fit(self, X, y, X_val=None, y_val=None):
        X = check_X(X)
        y = check_y(y, len(X))
        self.n_features_ = X.shape[1]
        self.mean, self.std = X.mean(0), X.std(0) + 1e-6
        z = (X - self.mean) / self.std
        self.centroids = np.stack([z[y == c].mean(0) for c in (0, 1)]).astype(np.float32)
        return self

    def predict_proba(self, X):
        z = (check_X(X, self.n_features_) - self.mean) / self.std
        logits = -((z[:, None, :] - self.centroids[None]) ** 2).mean(-1) / self.temperature
        p = np.exp(logits - logits.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def save(self, folder):
        save_file({"mean": self.mean, "std": self.std, "centroids": self.centroids},
                  str(folder / "centroids.safetensors"))
        return ["centroids.safetensors"]

    @classmethod
    def load(cls, folder, params, state):
        det = cls(**params)
        arrays = load_file(str(folder / "centroids.safetensors"))
        det.mean, det.std, det.centroids = arrays["mean"], arrays["std"], arrays["centroids"]
        det.n_features_ = state["n_features"]
        return det
'''


@pytest.fixture
def nearest_centroid_plugin(tmp_path, monkeypatch):
    """``nearest_centroid.py`` dropped into the classifiers package (a second folder on its path, so the source
    tree is untouched) and ``classifier/nearest_centroid.yaml`` in a config folder on Hydra's search path."""
    package_dir = tmp_path / "plugin_pkg"
    package_dir.mkdir()
    (package_dir / "nearest_centroid.py").write_text(NEAREST_CENTROID)
    config_dir = tmp_path / "plugin_conf" / "classifier"
    config_dir.mkdir(parents=True)
    (config_dir / "nearest_centroid.yaml").write_text("kind: nearest_centroid\ntemperature: 0.5\n")
    monkeypatch.setattr(negate.classifiers, "__path__", [*negate.classifiers.__path__, str(package_dir)])
    monkeypatch.setattr(CLASSIFIERS, "_entries", dict(CLASSIFIERS._entries))  # forget the detector afterwards
    yield config_dir.parent
    sys.modules.pop("negate.classifiers.nearest_centroid", None)
    if hasattr(negate.classifiers, "nearest_centroid"):
        delattr(negate.classifiers, "nearest_centroid")


def test_a_new_detector_is_one_module_and_one_yaml(nearest_centroid_plugin, image_folder, tmp_path):
    from negate.infer import predict
    from negate.train import train

    assert "nearest_centroid" in CLASSIFIERS  # found by importing the package's modules, nothing lists it
    search_path = f"hydra.searchpath=[file://{nearest_centroid_plugin}]"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            search_path, "classifier=nearest_centroid", "data=folder", f"data.path={image_folder}",
            f"paths.output_dir={tmp_path}", f"paths.models_dir={tmp_path}/models", "feature=[npr]", "encoder=none",
            "patches.size=64", "patches.count=1", "eval.n_boot=20", "model_name=centroid"])
    assert cfg.classifier.temperature == 0.5
    metrics = train(cfg)
    assert 0 <= metrics["test"]["auroc"] <= 1
    model_dir = Path(metrics["model_dir"])
    assert (model_dir / "centroids.safetensors").is_file()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        infer_cfg = compose(config_name="infer", overrides=[
            f"ckpt={model_dir}", f"path={image_folder / 'fake'}", f"paths.output_dir={tmp_path}"])
    rows, model = predict(infer_cfg, progress=False)
    assert model.detector.kind == "nearest_centroid" and model.detector.temperature == 0.5
    assert len(rows) == 12 and all(0 <= r["prob_synthetic"] <= 1 for r in rows)
