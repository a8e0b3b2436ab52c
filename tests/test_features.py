"""The contract of the seven forensic feature families: registry, configs, shapes, names, robustness on degenerate
images, batch independence and determinism. (Numerical agreement with reference libraries is in
test_features_reference.py.)"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from skimage import data

from negate.features import FeatureFamily, create_feature, list_features
from negate.plugins import FEATURES

# the handcrafted families: every registered one not backed by a network (those have their own tests)
FAMILIES = [name for name in list_features() if FEATURES.get(name).compilable]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def families() -> dict[str, FeatureFamily]:
    return {name: create_feature(name) for name in FAMILIES}


def photo_patches(size: int = 64) -> torch.Tensor:
    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    return torch.stack([img[:, y : y + size, x : x + size] for y, x in ((0, 0), (200, 200), (300, 120))])


def degenerate_images(size: int = 64) -> dict[str, torch.Tensor]:
    lines = torch.zeros(1, 3, size, size)
    lines[..., ::7, :] = 1.0  # one-pixel-wide horizontal lines
    lines[..., :, size // 2] = 1.0  # and a vertical one
    checker = ((torch.arange(size).view(-1, 1) + torch.arange(size).view(1, -1)) % 2).float().expand(1, 3, -1, -1)
    one_channel = torch.zeros(1, 3, size, size)
    one_channel[:, 0] = torch.rand(size, size, generator=torch.Generator().manual_seed(0))
    return {
        "black": torch.zeros(1, 3, size, size),
        "grey": torch.full((1, 3, size, size), 0.5),
        "saturated": torch.ones(1, 3, size, size),
        "lines": lines,
        "checkerboard": checker.contiguous(),
        "one_channel": one_channel,
        "noise": torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)),
    }


def test_the_seven_handcrafted_families_are_registered():
    assert set(FAMILIES) == {"spectral", "laplacian", "lbp", "wavelet", "resize_crop", "npr", "dct"}
    for name in FAMILIES:
        assert FEATURES.get(name).name == name


@pytest.mark.parametrize("name", FAMILIES)
def test_hydra_config_builds_the_family(name):
    path = REPO / "configs" / "feature" / f"{name}.yaml"
    assert path.read_text().splitlines()[0] == f"# @package feature.{name}"
    fam = FEATURES.build(name, **OmegaConf.to_container(OmegaConf.load(path)))
    assert type(fam) is FEATURES.get(name)
    assert fam.feature_names() == create_feature(name).feature_names()
    cfg = fam.config_for_cache()
    assert cfg["name"] == name and cfg["version"] == fam.version
    assert all(k in cfg for k in fam.hparams)


@pytest.mark.parametrize("name", FAMILIES)
def test_names_are_stable_unique_and_moderate(families, name):
    fam = families[name]
    names = fam.feature_names()
    assert len(names) == len(set(names)) == fam.dim
    assert all(n.startswith(f"{name}.") for n in names)
    assert 10 <= fam.dim <= 160
    assert set(fam.pool) <= {"mean", "max", "std"} and fam.pool


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("name", FAMILIES)
def test_shape_dtype_and_finite_on_real_patches(families, name, size):
    out = families[name](photo_patches(size))
    assert out.shape == (3, families[name].dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_finite_on_degenerate_images(families, name):
    for kind, x in degenerate_images().items():
        out = families[name](x)
        assert out.shape == (1, families[name].dim), kind
        assert torch.isfinite(out).all(), (kind, [n for n, v in zip(families[name].feature_names(), out[0]) if not torch.isfinite(v)])


@pytest.mark.parametrize("name", FAMILIES)
def test_constant_images_have_no_texture(families, name):
    """A flat patch has no residual: every family must tell it apart from a noisy one, and two flat patches of
    different brightness must look the same to the residual-based families."""
    fam = families[name]
    grey, noise = degenerate_images()["grey"], degenerate_images()["noise"]
    assert not torch.allclose(fam(grey), fam(noise))
    if name in ("laplacian", "npr", "lbp", "resize_crop"):
        torch.testing.assert_close(fam(grey), fam(torch.full_like(grey, 0.8)))


@pytest.mark.parametrize("name", FAMILIES)
def test_batch_rows_equal_single_image_rows(families, name):
    x = torch.cat([photo_patches(64), degenerate_images()["lines"], degenerate_images()["saturated"]])
    fam = families[name]
    batched = fam(x)
    singles = torch.cat([fam(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batched, singles, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_deterministic(families, name):
    x = photo_patches(64)
    a, b = families[name](x), create_feature(name)(x.clone())
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", FAMILIES)
def test_float64_input_gives_the_float32_result(families, name):
    """Families compute in float32 whatever the input dtype."""
    x = photo_patches(64)
    torch.testing.assert_close(families[name](x.double()), families[name](x))


def test_patch_sides_must_suit_the_block_families():
    with pytest.raises(ValueError):
        create_feature("dct")(torch.rand(1, 3, 60, 60))
    with pytest.raises(ValueError):
        create_feature("spectral")(torch.rand(1, 3, 60, 60))


def test_constructor_arguments_change_the_cache_key_and_names():
    a, b = create_feature("spectral"), create_feature("spectral", n_bins=8)
    assert a.config_for_cache() != b.config_for_cache()
    assert b.dim == a.dim - 2 * (32 - 8)
    lbp = create_feature("lbp", radii=[[8, 1], [24, 3]])
    assert lbp.dim == 2 * (10 + 26) and "lbp.grey_p24r3_25" in lbp.feature_names()
    assert create_feature("wavelet", levels=2).dim == 2 * 10 + 3
    assert create_feature("dct", n_freq=5).dim == 5 * 3 + 8 + 11
    assert create_feature("resize_crop", k=3).config_for_cache()["k"] == 3


def test_resize_crop_is_seeded():
    x = photo_patches(128)
    a = create_feature("resize_crop", seed=1)(x)
    assert torch.equal(a, create_feature("resize_crop", seed=1)(x))
    assert not torch.allclose(a, create_feature("resize_crop", seed=2)(x))


def test_npr_nearest_residual_vanishes_on_pixel_repeated_images():
    small = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    up = small.repeat_interleave(2, -2).repeat_interleave(2, -1)
    fam = create_feature("npr")
    out = fam(up)
    names = fam.feature_names()
    near = [i for i, n in enumerate(names) if n.startswith("npr.near_") and n.endswith("_mean_abs")]
    assert (out[:, near] == 0).all()
    assert (fam(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))[:, near] > 1).all()


def test_dct_sees_jpeg_quantisation(tmp_path):
    """A JPEG-compressed patch has far more zero high-frequency coefficients than the original, and its AC
    magnitudes are quantised, which the zero shares must show."""
    from PIL import Image

    img = data.astronaut()[:128, :128]
    Image.fromarray(img).save(tmp_path / "q50.jpg", quality=50)
    jpeg = np.asarray(Image.open(tmp_path / "q50.jpg").convert("RGB"))
    x = torch.from_numpy(np.stack([img, jpeg])).permute(0, 3, 1, 2).float() / 255
    fam = create_feature("dct")
    out = fam(x)
    zero_cols = [i for i, n in enumerate(fam.feature_names()) if n.endswith("_zero")]
    assert out[1, zero_cols].mean() > out[0, zero_cols].mean() + 0.1


def test_benford_distance_is_small_on_photographs_and_zero_share_sums_to_one():
    fam = create_feature("dct")
    out = fam(photo_patches(128))
    names = fam.feature_names()
    shares = out[:, [names.index(f"dct.benford_{d}") for d in range(1, 10)]]
    torch.testing.assert_close(shares.sum(1), torch.ones(3))
    hist = out[:, [i for i, n in enumerate(names) if n.startswith("dct.ac_hist_")]]
    torch.testing.assert_close(hist.sum(1), torch.ones(3))
    # digit 1 is the most common leading digit of natural-image DCT magnitudes
    assert (shares.argmax(1) == 0).all()
    assert math.isclose(float(out[:, names.index("dct.benford_dist")].min()), 0.0, abs_tol=0.5)
