"""WaRPAD: the Haar high-pass against pywt, the tiling, the per-patch statistics, and the score's behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from negate.plugins import FEATURES
from negate.features.warpad import STATS, WaRPADFamily, haar_highpass
from negate.models.encoders import create_encoder

TINY_VIT = {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32}


def pywt_highpass(img: np.ndarray, levels: int) -> np.ndarray:
    coeffs = pywt.wavedec2(img, "haar", level=levels)
    coeffs[0] = np.zeros_like(coeffs[0])
    return pywt.waverec2(coeffs, "haar")


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_haar_highpass_equals_pywt_with_the_approximation_zeroed(levels):
    rng = np.random.default_rng(levels)
    img = rng.random((2, 3, 32, 48)).astype(np.float64)
    ours = haar_highpass(torch.from_numpy(img), levels).numpy()
    ref = np.stack([[pywt_highpass(img[n, c], levels) for c in range(3)] for n in range(2)])
    assert np.allclose(ours, ref, atol=1e-10)


def test_haar_highpass_removes_block_constant_content_only():
    blocks = torch.rand(1, 3, 4, 6).repeat_interleave(4, -2).repeat_interleave(4, -1)  # constant on 4x4 blocks
    assert torch.allclose(haar_highpass(blocks, 2), torch.zeros_like(blocks), atol=1e-6)
    assert haar_highpass(blocks, 3).abs().max() > 1e-3  # coarser level: no longer constant per block
    odd = torch.rand(1, 3, 30, 35)
    assert haar_highpass(odd, 2).shape == odd.shape


def tiny_family(**kwargs) -> WaRPADFamily:
    model = create_encoder("dinov3", pretrained=False, model_kwargs=TINY_VIT)
    return WaRPADFamily(encoder={"name": "dinov3", "model_kwargs": TINY_VIT}, pretrained=False, model=model,
                        device="cpu", **kwargs)


def test_family_is_registered_and_returns_its_named_statistics():
    assert FEATURES.get("warpad") is WaRPADFamily
    fam = tiny_family(grid=2)
    assert fam.feature_names() == [f"warpad.{s}" for s in STATS] and fam.feature_names()[0] == "warpad.score"
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = fam(x)
    assert out.shape == (3, 5) and out.dtype == torch.float32 and torch.isfinite(out).all()
    score, lo, hi, std, rel = out.T
    assert (lo <= score + 1e-6).all() and (score <= hi + 1e-6).all() and (std >= 0).all() and (rel > 0).all()
    sim, rel_tiles = fam.similarities(x)
    assert sim.shape == (3, 4)
    assert torch.allclose(score, sim.mean(1), atol=1e-6) and torch.allclose(rel, rel_tiles.mean(1), atol=1e-6)


def test_tiles_cut_the_resized_patch_into_a_grid():
    fam = tiny_family(grid=2)
    x = torch.rand(1, 3, 64, 64)  # exactly grid * input size: no resize
    tiles = fam.tiles(x)
    assert tiles.shape == (4, 3, 32, 32)
    assert torch.equal(tiles[1], x[0, :, :32, 32:]) and torch.equal(tiles[2], x[0, :, 32:, :32])
    assert tiny_family(grid=1).tiles(torch.rand(2, 3, 80, 80)).shape == (2, 3, 32, 32)


def test_no_perturbation_means_perfect_similarity():
    fam = tiny_family(alpha=0.0)
    out = fam(torch.rand(2, 3, 48, 48))
    assert torch.allclose(out[:, 0], torch.ones(2), atol=1e-5)
    assert torch.allclose(out[:, 4], torch.zeros(2), atol=1e-5)


def test_stronger_high_frequency_perturbation_lowers_the_pretrained_similarity():
    from skimage import data

    img = torch.from_numpy(data.astronaut()[:256, 128:384].copy()).permute(2, 0, 1).float()[None] / 255
    enc = create_encoder("effnet_lite0")
    scores = [WaRPADFamily("effnet_lite0", alpha=a, model=enc, device="cpu")(img)[0, 0].item()
              for a in (0.05, 0.2, 0.8)]
    assert 1.0 > scores[0] > scores[1] > scores[2]


def test_cache_key_carries_model_identity_and_paper_parameters():
    key = tiny_family(alpha=0.1, levels=2, grid=1).config_for_cache()
    assert key["name"] == "warpad" and key["alpha"] == 0.1 and key["levels"] == 2 and key["grid"] == 1
    assert key["model"]["repo_id"] == "timm/vit_base_patch16_dinov3.lvd1689m"
    assert key["encoder"]["model_kwargs"] == TINY_VIT
    assert tiny_family(alpha=0.2).config_for_cache() != key
    with pytest.raises(ValueError):
        tiny_family(grid=0)
