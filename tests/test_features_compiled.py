"""The handcrafted families under torch.compile (inductor) give the eager numbers, and a compiler failure falls back
to eager code instead of failing the run."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from skimage import data

from negate.features import create_feature, list_features
from negate.features.compiled import CompiledFamily, compile_families, should_compile
from negate.plugins import FEATURES

HANDCRAFTED = [name for name in list_features() if FEATURES.get(name).compilable]


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    """Three real 64x64 patches (textured, flat sky, saturated) in [0, 1]."""
    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255.0
    return torch.stack([img[:, y : y + 64, x : x + 64] for y, x in ((0, 0), (200, 160), (300, 300))])


@pytest.mark.parametrize("name", HANDCRAFTED)
def test_compiled_family_equals_eager(patches, name):
    family = create_feature(name).eval()
    compiled = CompiledFamily(family)
    with torch.inference_mode():
        eager, fused = family(patches), compiled(patches)
    assert compiled.fell_back is None, compiled.fell_back
    if name == "lbp":  # float64 skimage-exact codes either way
        assert torch.equal(eager, fused)
    else:
        torch.testing.assert_close(fused, eager, rtol=2e-3, atol=2e-4)


def test_smaller_batches_are_padded_not_recompiled(patches):
    from torch._dynamo.utils import counters

    family = create_feature("npr").eval()
    runner = CompiledFamily(family)
    with torch.inference_mode():  # as the extraction engine runs: tensors made here, not outside
        batch = patches.clone()
        runner(batch)
        frames = counters["stats"]["unique_graphs"]
        small = runner(batch[:1].clone())
        assert counters["stats"]["unique_graphs"] == frames  # no new graph for the short batch
        torch.testing.assert_close(small, family(patches[:1]), rtol=2e-3, atol=2e-4)
    assert small.shape[0] == 1


def test_compiler_failure_falls_back_to_eager(patches, monkeypatch, caplog):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    torch._dynamo.reset()
    family = create_feature("wavelet", levels=3).eval()
    runner = CompiledFamily(family)
    x = patches[:, :, :48, :48]  # a shape no other test compiled
    with caplog.at_level(logging.WARNING, logger="negate.features.compiled"):
        out = runner(x)
    torch._dynamo.reset()
    assert runner.fell_back and "using eager code" in caplog.text
    torch.testing.assert_close(out, family(x))
    torch.testing.assert_close(runner(x), family(x))  # later calls go straight to eager


def test_input_errors_still_raise_under_compile(patches):
    runner = CompiledFamily(create_feature("spectral"))
    with pytest.raises(ValueError, match="multiples of 8"):
        runner(patches[:, :, :60, :60])


def test_only_handcrafted_families_are_compiled():
    from negate.features.embedding import EncoderFamily

    assert all(create_feature(n).compilable for n in HANDCRAFTED)
    assert EncoderFamily.compilable is False
    fams = [create_feature("npr")]
    assert isinstance(compile_families(fams)[0], CompiledFamily)


@pytest.mark.parametrize("setting, n, expected", [("auto", 499, False), ("auto", 500, True), (True, 1, True), (False, 10**6, False)])
def test_compile_setting(setting, n, expected):
    assert should_compile(setting, n, [create_feature("npr")], min_images=500) is expected


def test_compile_setting_is_validated():
    with pytest.raises(ValueError, match="true, false or auto"):
        should_compile("sometimes", 10, [create_feature("npr")], 500)


def test_extraction_with_compile_equals_eager(tmp_path, image_folder):
    from negate.data.dataset import ExtractionItem, PatchConfig, make_key
    from negate.data.decode import read_file_bytes, sha256_bytes
    from negate.data.records import load_folder
    from negate.extract import extract_features

    records, _ = load_folder(image_folder)
    items = [ExtractionItem(r.path, make_key(sha256_bytes(read_file_bytes(r.path)), ""), "") for r in records]
    patches = PatchConfig(64, 2, "grid")
    fams = [create_feature("npr"), create_feature("laplacian")]
    eager = extract_features(items, fams, patches, tmp_path / "eager", compile=False)
    fused = extract_features(items, fams, patches, tmp_path / "compiled", compile=True)
    assert eager.keys == fused.keys
    np.testing.assert_allclose(fused.X, eager.X, rtol=2e-3, atol=2e-4)
