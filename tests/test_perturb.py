"""Perturbation specs: parsing, pixel effects, determinism, random views."""

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from negate.data.perturb import (
    ROBUSTNESS_SUITE,
    AugmentConfig,
    Op,
    apply_view,
    canonical_view,
    parse_view,
    random_view,
)


@pytest.fixture(scope="module")
def img():
    """Smooth gradients plus fine texture, so compression and blur both have something to remove."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    base = np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1).astype(float)
    arr = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def pixels(im):
    return np.asarray(im, dtype=np.float64)


def mse(a, b):
    return float(((pixels(a) - pixels(b)) ** 2).mean())


def test_parse_simple_and_composed():
    assert parse_view("jpeg:75") == [Op("jpeg", 75, "jpeg")]
    ops = parse_view("jpeg:75+downscale:0.5")
    assert [o.name for o in ops] == ["jpeg", "downscale"] and ops[1].value == 0.5
    assert parse_view("reencode:jpeg90") == [Op("reencode", 90, "jpeg")]
    assert parse_view("reencode:png") == [Op("reencode", 0.0, "png")]
    for identity in ("", "none", "identity", " None "):
        assert parse_view(identity) == []


def test_canonical_view_normalises_spelling():
    assert canonical_view(" JPEG:75.0 + crop:0.50 ") == "jpeg:75+crop:0.5"
    assert canonical_view("reencode:jpg90") == "reencode:jpeg90"
    assert canonical_view("") == "none"
    for spec in ROBUSTNESS_SUITE:
        assert canonical_view(spec) == spec  # suite names are already canonical


@pytest.mark.parametrize(
    "spec",
    ["jpeg", "jpeg:", "jpeg:0", "jpeg:101", "jpeg:7.5", "jpeg:abc", "webp:-1", "downscale:1.5", "downscale:0",
     "crop:0", "crop:2", "blur:0", "blur:-1", "blur:nan", "sharpen:1", "jpeg:75+", "+jpeg:75", "reencode:gif",
     "reencode:jpeg", "reencode:jpeg200"],
)
def test_bad_specs_raise_value_error(spec):
    with pytest.raises(ValueError):
        parse_view(spec)


def test_non_string_spec_raises():
    with pytest.raises(ValueError):
        parse_view(75)


@pytest.mark.parametrize("spec", ROBUSTNESS_SUITE)
def test_suite_changes_pixels_and_is_deterministic(img, spec):
    a, b = apply_view(img, spec), apply_view(img, spec)
    assert a.mode == "RGB"
    assert a.tobytes() == b.tobytes()
    assert a.size != img.size or a.tobytes() != img.tobytes()


def test_jpeg_quality_orders_distortion(img):
    errors = [mse(img, apply_view(img, f"jpeg:{q}")) for q in (95, 75, 50)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_jpeg_matches_an_in_memory_pillow_round_trip(img):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=75)
    expected = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    assert apply_view(img, "jpeg:75").tobytes() == expected.tobytes()


def test_reencode_jpeg_equals_jpeg_and_png_is_lossless(img):
    assert apply_view(img, "reencode:jpeg90").tobytes() == apply_view(img, "jpeg:90").tobytes()
    assert apply_view(img, "reencode:png").tobytes() == img.tobytes()
    assert apply_view(img, "reencode:webp80").tobytes() == apply_view(img, "webp:80").tobytes()


def test_downscale_size_and_antialiasing(img):
    half = apply_view(img, "downscale:0.5")
    assert half.size == (64, 48)
    assert apply_view(img, "downscale:0.75").size == (96, 72)
    # Antialiasing averages the per-pixel noise away; plain subsampling would keep its full variance.
    noise_img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    down = pixels(apply_view(noise_img, "downscale:0.25"))
    subsampled = pixels(noise_img)[::4, ::4]
    assert down.std() < 0.5 * subsampled.std()
    assert apply_view(img, "downscale:1").tobytes() == img.tobytes()


def test_crop_keeps_area_fraction_at_centre(img):
    out = apply_view(img, "crop:0.5")
    w, h = out.size
    assert abs(w * h / (128 * 96) - 0.5) < 0.02
    left, top = (128 - w) // 2, (96 - h) // 2
    assert np.array_equal(pixels(out), pixels(img)[top : top + h, left : left + w])


def test_blur_is_gaussian_with_given_sigma(img):
    out = apply_view(img, "blur:1")
    assert out.tobytes() == img.filter(ImageFilter.GaussianBlur(1.0)).tobytes()
    def hf(a):
        g = pixels(a).mean(axis=2)
        return np.abs(np.diff(g, axis=1)).mean()
    assert hf(out) < 0.6 * hf(img)
    assert hf(apply_view(img, "blur:2")) < hf(out)


def test_composition_applies_left_to_right(img):
    composed = apply_view(img, "jpeg:75+downscale:0.5")
    stepwise = apply_view(apply_view(img, "jpeg:75"), "downscale:0.5")
    assert composed.tobytes() == stepwise.tobytes()
    assert composed.tobytes() != apply_view(img, "downscale:0.5+jpeg:75").tobytes()


def test_non_rgb_inputs_and_input_untouched(img):
    before = img.tobytes()
    for mode in ("L", "RGBA", "P"):
        out = apply_view(img.convert(mode), "jpeg:80")
        assert out.mode == "RGB" and out.size == img.size
    assert apply_view(img.convert("L"), "none").mode == "RGB"
    apply_view(img, "blur:1+crop:0.5")
    assert img.tobytes() == before


def test_random_view_is_deterministic_and_parseable():
    specs = [random_view(seed) for seed in range(300)]
    assert specs == [random_view(seed) for seed in range(300)]
    assert len(set(specs)) > 100
    assert "none" in specs
    for spec in specs:
        parse_view(spec)


def test_random_view_respects_probabilities_and_ranges():
    never = AugmentConfig(p_crop=0, p_downscale=0, p_blur=0, p_jpeg=0, p_webp=0)
    assert {random_view(s, never) for s in range(50)} == {"none"}
    always_jpeg = {"p_crop": 0, "p_downscale": 0, "p_blur": 0, "p_jpeg": 1.0, "jpeg_quality": [70, 72]}
    qualities = {parse_view(random_view(s, always_jpeg))[0].value for s in range(200)}
    assert qualities == {70, 71, 72}
    # Frequencies follow the configured probabilities (fixed seeds: deterministic, tolerance is generous).
    cfg = AugmentConfig(p_crop=0.5, p_downscale=0.2, p_blur=0.0, p_jpeg=0.3)
    ops = [[o.name for o in parse_view(random_view(s, cfg))] for s in range(2000)]
    assert abs(np.mean(["crop" in o for o in ops]) - 0.5) < 0.05
    assert abs(np.mean(["downscale" in o for o in ops]) - 0.2) < 0.05
    assert abs(np.mean(["jpeg" in o for o in ops]) - 0.3) < 0.05
    assert not any("blur" in o for o in ops)
    for o in ops:  # fixed order: geometry first, compression last
        order = [n for n in ("crop", "downscale", "blur", "jpeg") if n in o]
        assert o == order


def test_random_view_config_errors():
    with pytest.raises(ValueError, match="unknown augment config"):
        random_view(0, {"p_jepg": 0.5})
    with pytest.raises(ValueError):
        AugmentConfig(p_jpeg=1.5)
    with pytest.raises(ValueError):
        AugmentConfig(jpeg_quality=(90, 60))
    with pytest.raises(ValueError):
        AugmentConfig(downscale=(0.0, 0.5))
