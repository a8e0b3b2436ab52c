"""TAEF2 written from its layout: the architecture must hold exactly the tensors the MIT weights hold."""

from __future__ import annotations

import time

import pytest
import torch

from negate.models.hub import ModelUnavailableError
from negate.models.taef2 import TAEF2_FILES, default_taef2_dir, load_taef2, taef2_decoder, taef2_encoder


def _count(module: torch.nn.Module) -> tuple[int, int]:
    sd = module.state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


def test_layout_matches_the_published_weights():
    # numbers from shared/models/taef2/README.md: 79 tensors each, 1,338,528 / 1,338,499 parameters
    assert _count(taef2_encoder()) == (79, 1_338_528)
    assert _count(taef2_decoder()) == (79, 1_338_499)
    keys = set(taef2_encoder().state_dict())
    assert {"0.weight", "1.conv.4.bias", "2.weight", "11.pool.0.weight", "13.pool.1.bias", "14.weight"} <= keys
    assert "2.bias" not in keys and "3.pool.0.weight" not in keys  # strided convs have no bias; early blocks no pool


def test_reconstruct_keeps_shape_and_range_for_any_size():
    ae = load_taef2(pretrained=False)
    x = torch.rand(2, 3, 37, 50)
    out = ae.reconstruct(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not any(p.requires_grad for p in ae.parameters())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ae.reconstruct(torch.rand(3, 32, 32))


def test_missing_weights_fail_fast_with_a_hint(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="taef2_encoder.pth") as err:
        load_taef2(tmp_path)
    assert "madebyollin/taesd" in str(err.value) and time.perf_counter() - start < 1.0


@pytest.mark.skipif(default_taef2_dir() is None, reason="offline TAEF2 weights are only on our machines")
def test_real_weights_reconstruct_a_photo_like_image():
    ae = load_taef2()
    assert all((default_taef2_dir() / f).is_file() for f in TAEF2_FILES)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    x = torch.stack([xx, yy, (xx + yy) / 2])[None] * 0.8 + 0.1
    psnr = -10 * torch.log10(((ae.reconstruct(x) - x) ** 2).mean())
    assert psnr > 28
