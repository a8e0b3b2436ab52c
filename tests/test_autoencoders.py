"""Autoencoders and the aerecon family, on tiny random-config instances of every diffusers class used."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from negate.features.aerecon import AEReconFamily
from negate.models.autoencoders import TINY_CLASSES, create_autoencoder, resolve_ae_spec
from negate.models.hub import ModelUnavailableError
from negate.models.taef2 import TinyAutoencoder
from negate.plugins import AUTOENCODERS, FEATURES

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ae"
AE_YAMLS = sorted(p for p in CONFIGS.glob("*.yaml") if p.stem != "none")
HUB_AES = [n for n in AUTOENCODERS.names() if AUTOENCODERS.get(n).cls not in TINY_CLASSES]

_KL = {"block_out_channels": [8, 16], "latent_channels": 4, "norm_num_groups": 4, "layers_per_block": 1,
       "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2}
TINY = {
    "AutoencoderKL": {**_KL, "scaling_factor": 0.3611, "shift_factor": 0.1159},
    "AutoencoderKLFlux2": {**_KL, "patch_size": [2, 2]},
    "AutoencoderDC": {
        "latent_channels": 4, "attention_head_dim": 8,
        "encoder_block_types": ["ResBlock", "EfficientViTBlock"],
        "decoder_block_types": ["ResBlock", "EfficientViTBlock"],
        "encoder_block_out_channels": [8, 16], "decoder_block_out_channels": [8, 16],
        "encoder_layers_per_block": [1, 1], "decoder_layers_per_block": [1, 1],
        "encoder_qkv_multiscales": [[], [5]], "decoder_qkv_multiscales": [[], [5]],
        "upsample_block_type": "interpolate", "downsample_block_type": "Conv", "scaling_factor": 0.41407,
    },
}
NAME_OF_CLASS = {"AutoencoderKL": "zimage", "AutoencoderKLFlux2": "flux_klein", "AutoencoderDC": "sana_dcae"}


def tiny(cls_name: str, seed: int = 0):
    return create_autoencoder(NAME_OF_CLASS[cls_name], pretrained=False, config=TINY[cls_name], seed=seed)


def test_every_ae_yaml_matches_the_registry_and_uses_a_supported_class():
    assert {p.stem for p in AE_YAMLS} == set(AUTOENCODERS.names())
    for path in AE_YAMLS:
        cfg = OmegaConf.to_container(OmegaConf.load(path))
        spec = AUTOENCODERS.get(cfg["name"])
        assert cfg["name"] == path.stem
        assert (cfg["cls"], cfg["repo_id"], cfg["subfolder"], cfg["gated"]) == (
            spec.cls, spec.repo_id, spec.subfolder, spec.gated)
        assert cfg["cls"] in TINY_CLASSES or (cfg["input_range"] == [-1, 1] and cfg["cls"] in TINY)
        resolved, _ = resolve_ae_spec(cfg)  # no unknown keys
        assert resolved == spec


@pytest.mark.parametrize("cls_name", sorted(TINY))
def test_tiny_reconstruction_keeps_shape_and_range_for_any_size(cls_name):
    ae = tiny(cls_name)
    assert ae.kind == cls_name and ae.downsample == (4 if cls_name == "AutoencoderKLFlux2" else 2)
    x = torch.rand(2, 3, 29, 46, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        rec = ae.reconstruct(x)
    assert rec.shape == x.shape and torch.isfinite(rec).all()
    assert rec.min() >= 0 and rec.max() <= 1
    assert not torch.allclose(rec, tiny(cls_name, seed=1).reconstruct(x))  # the weights matter


@pytest.mark.parametrize("cls_name", sorted(TINY))
def test_latent_transforms_are_the_models_and_cancel_in_a_round_trip(cls_name):
    ae = tiny(cls_name)
    vae = ae.vae
    if cls_name == "AutoencoderKLFlux2":  # non-trivial BatchNorm statistics, so the test can see mistakes
        vae.bn.running_mean.uniform_(-1, 1)
        vae.bn.running_var.uniform_(0.5, 2)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        lat = ae.encode(x)
        if cls_name == "AutoencoderDC":
            raw = vae.encode(x * 2 - 1).latent
            assert torch.allclose(lat, raw * 0.41407, atol=1e-6)
        else:
            raw = vae.encode(x * 2 - 1).latent_dist.mode()
        if cls_name == "AutoencoderKL":
            assert torch.allclose(lat, (raw - 0.1159) * 0.3611, atol=1e-6)
        if cls_name == "AutoencoderKLFlux2":
            assert lat.shape == (1, 16, 8, 8)  # 4 channels x 2x2 patch, at 1/4 of 32 px
            patches = raw.unfold(2, 2, 2).unfold(3, 2, 2)  # (1, 4, 8, 8, 2, 2)
            packed = patches.permute(0, 1, 4, 5, 2, 3).reshape(1, 16, 8, 8)
            mean = vae.bn.running_mean.view(1, -1, 1, 1)
            std = (vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).sqrt()
            assert torch.allclose(lat, (packed - mean) / std, atol=1e-5)
        direct = ((vae.decode(raw).sample + 1) / 2).clamp(0, 1)
        assert torch.allclose(ae.decode(lat), direct, atol=1e-5)


@pytest.mark.parametrize("name", HUB_AES)
def test_missing_ae_weights_raise_a_clear_error_at_once(name, tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        create_autoencoder(name)
    repo = AUTOENCODERS.get(name).repo_id
    assert info.value.repo_id == repo and f"hf download {repo}" in str(info.value)
    assert ("hf auth login" in str(info.value)) == AUTOENCODERS.get(name).gated
    print(f"{name}: ModelUnavailableError after {(time.perf_counter() - t0) * 1000:.1f} ms")


def test_taef2_is_an_ae_of_the_group_with_local_weights(tmp_path):
    ae = create_autoencoder("taef2", pretrained=False)
    assert isinstance(ae, TinyAutoencoder) and ae.identity()["ae"] == "taef2"
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="taef2_encoder.pth") as info:  # a folder without the weights
        create_autoencoder({"name": "taef2", "weights_dir": str(tmp_path)})
    assert time.perf_counter() - t0 < 1.0 and "weights_dir" in str(info.value)
    fam = AEReconFamily(ae="taef2", pretrained=False, model=ae, blocks=2, device="cpu")
    x = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    out = fam(x)
    assert out.shape == (2, len(fam.feature_names())) and torch.isfinite(out).all()
    assert fam.config_for_cache()["model"] == ae.identity()


def test_pretrained_vae_loads_from_the_hub_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path))
    trained = tiny("AutoencoderKLFlux2", seed=5)
    rev = "89abcdef0123456789abcdef0123456789abcdef"
    folder = tmp_path / "models--black-forest-labs--FLUX.2-klein-4B"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    trained.vae.save_pretrained(folder / "snapshots" / rev / "vae")  # the layout `hf download` leaves
    loaded = create_autoencoder("flux_klein")
    assert loaded.kind == "AutoencoderKLFlux2" and loaded.weights == f"black-forest-labs/FLUX.2-klein-4B@{rev}/vae"
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.reconstruct(x), trained.reconstruct(x), atol=1e-6)
    with pytest.raises(ValueError, match="latent_channels"):  # the yaml's documented values are checked on load
        create_autoencoder({"name": "flux_klein", "latent_channels": 32})


def test_aerecon_family_measures_the_reconstruction_error():
    ae = tiny("AutoencoderKL")
    fam = AEReconFamily(ae="zimage", pretrained=False, model=ae, blocks=2, device="cpu")
    assert FEATURES.get("aerecon") is AEReconFamily
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    out = fam(x)
    names = fam.feature_names()
    assert out.shape == (3, len(names)) == (3, 11) and torch.isfinite(out).all()
    col = {n: out[:, i] for i, n in enumerate(names)}
    with torch.no_grad():
        rec = ae.reconstruct(x)
    l1 = (rec - x).abs().mean(1)
    assert torch.allclose(col["aerecon.l1_mean"], l1.flatten(1).mean(1), atol=1e-6)
    assert torch.allclose(col["aerecon.mse_mean"], (rec - x).pow(2).mean(dim=(1, 2, 3)), atol=1e-6)
    blocks = F.avg_pool2d(l1.unsqueeze(1), 16).flatten(1)  # 2x2 blocks of 16 px
    assert torch.allclose(col["aerecon.l1_block_max"], blocks.amax(1), atol=1e-6)
    assert torch.allclose(col["aerecon.l1_block_min"], blocks.amin(1), atol=1e-6)
    assert (col["aerecon.l1_block_min"] <= col["aerecon.l1_mean"] + 1e-6).all()
    assert (col["aerecon.hp_l1_mean"] > 0).all()
    detail = x - F.avg_pool2d(x, 2).repeat_interleave(2, -1).repeat_interleave(2, -2)  # Haar level-1 detail bands
    assert torch.allclose(col["aerecon.hp_l1_rel"], col["aerecon.hp_l1_mean"] / (detail.abs().mean((1, 2, 3)) + 1e-4),
                          rtol=1e-4)
    assert len(AEReconFamily(ae="zimage", pretrained=False, model=ae, highpass=False).feature_names()) == 8


def test_aerecon_cache_key_names_the_model_and_architecture():
    fam = AEReconFamily(ae={"name": "sana_dcae", "config": TINY["AutoencoderDC"]}, pretrained=False, device="cpu")
    key = fam.config_for_cache()
    assert key["name"] == "aerecon" and key["model"]["repo_id"] == "mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers"
    assert key["model"]["class"] == "AutoencoderDC" and key["ae"]["config"]["latent_channels"] == 4
    assert key["precision"] == "fp32"
    other = AEReconFamily(ae={"name": "sana_dcae", "config": TINY["AutoencoderDC"]}, pretrained=False, blocks=8,
                          device="cpu").config_for_cache()
    assert other != key
