"""Format-matched training fakes: re-saved with a training real's JPEG tables, so the format stops separating classes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image, JpegImagePlugin

from negate.data.format_match import format_matched
from negate.data.records import ImageRecord
from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers

register_resolvers()


def _smooth(rng: np.random.Generator, h: int = 96, w: int = 112) -> np.ndarray:
    """A photo-like image: smooth colour gradients plus mild noise (the same maker for both classes)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.cos(5 * yy * rng.uniform(0.5, 2))
                     for _ in range(3)], -1)
    return np.clip(127 + 90 * base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def _write(path, array, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save)
    return str(path)


def _set(tmp_path, n_real=4, n_fake=12, png_reals=0, seed=0):
    rng = np.random.default_rng(seed)
    reals = [ImageRecord(_write(tmp_path / "real" / f"r{i}.jpg", _smooth(rng), quality=(50, 95)[i % 2],
                                subsampling=(2, 0)[i % 2]), 0, "camera", f"s{i % 2}") for i in range(n_real)]
    reals += [ImageRecord(_write(tmp_path / "real" / f"p{i}.png", _smooth(rng)), 0, "scan", "png") for i in
              range(png_reals)]
    fakes = [ImageRecord(_write(tmp_path / "fake" / f"f{i}.png", _smooth(rng)), 1, "gen", "g") for i in range(n_fake)]
    return reals, fakes


def _tables(path):
    with Image.open(path) as im:
        return (im.format, im.quantization if im.format == "JPEG" else None,
                JpegImagePlugin.get_sampling(im) if im.format == "JPEG" else None)


def test_every_fake_takes_the_tables_and_subsampling_of_a_real(tmp_path):
    reals, fakes = _set(tmp_path)
    records = [reals[0], fakes[0], reals[1], *fakes[1:], *reals[2:]]
    out = format_matched(records, 1.0, tmp_path / "cache")
    assert [r.label for r in out] == [r.label for r in records]  # same order, same labels
    assert all(o is r for o, r in zip(out, records) if r.label == 0)  # reals untouched
    real_saves = {_tables(r.path)[2]: _tables(r.path) for r in reals}
    assert len(real_saves) == 2  # q50 4:2:0 and q95 4:4:4
    drawn = []
    for before, after in zip(records, out):
        if before.label == 0:
            continue
        assert after.path != before.path and after.path.endswith(".jpg")
        assert (after.generator, after.source, after.extra["format_matched_from"]) == ("gen", "g", before.path)
        save = _tables(after.path)
        assert save in real_saves.values()  # the quantisation tables and subsampling of one of the reals
        drawn.append(save[2])
        a = np.asarray(Image.open(before.path).convert("RGB"), dtype=float)
        b = np.asarray(Image.open(after.path).convert("RGB"), dtype=float)
        assert a.shape == b.shape and np.abs(a - b).mean() < 12  # same picture, only re-saved
    assert set(drawn) == {0, 2}  # both reals' saves were drawn over 12 fakes


def test_a_lossless_real_leaves_its_fake_as_it_is_and_share_zero_is_off(tmp_path):
    reals, fakes = _set(tmp_path, n_real=0, png_reals=3)
    assert format_matched(reals + fakes, 1.0, tmp_path / "cache") == reals + fakes
    assert not (tmp_path / "cache" / "format_matched").exists()
    reals, fakes = _set(tmp_path / "b")
    assert format_matched(reals + fakes, 0.0, tmp_path / "cache") == reals + fakes
    with pytest.raises(ValueError, match="share"):
        format_matched(reals + fakes, 1.5, tmp_path / "cache")


def test_share_is_a_seeded_probability_and_files_are_cached(tmp_path):
    reals, fakes = _set(tmp_path, n_fake=40)
    half = format_matched(reals + fakes, 0.5, tmp_path / "cache", seed=1)
    changed = [o for o, r in zip(half, reals + fakes) if o.path != r.path]
    assert 8 <= len(changed) <= 32
    mtimes = {o.path: (tmp_path / o.path).stat().st_mtime_ns for o in changed}
    again = format_matched(reals + fakes, 0.5, tmp_path / "cache", seed=1)
    assert [o.path for o in again] == [o.path for o in half]  # the same draws
    assert {o.path: (tmp_path / o.path).stat().st_mtime_ns for o in changed} == mtimes  # read back, not rewritten
    other = format_matched(reals + fakes, 0.5, tmp_path / "cache", seed=2)
    assert [o.path for o in other] != [o.path for o in half]


def test_an_unreadable_fake_is_kept_for_extraction_to_report(tmp_path):
    reals, fakes = _set(tmp_path, n_fake=2)
    broken = tmp_path / "fake" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    missing = ImageRecord(str(tmp_path / "fake" / "gone.png"), 1, "gen", "g")
    records = reals + fakes + [ImageRecord(str(broken), 1, "gen", "g"), missing]
    out = format_matched(records, 1.0, tmp_path / "cache")
    assert out[-2:] == records[-2:]
    assert all(o.path.endswith(".jpg") for o in out[len(reals):len(reals) + 2])


def _cfg(tmp_path, *extra):
    overrides = ["protocol=cv", "data=folder", f"data.path={tmp_path}", f"paths.output_dir={tmp_path / 'out'}",
                 "feature=[dct]", "encoder=none", "classifier=logreg", "classifier.C=1", "patches.size=64",
                 "patches.count=1", "data.reencode=none", *extra]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="evaluate", overrides=overrides)


def test_matched_training_finds_a_generation_saved_as_jpeg(tmp_path):
    """The dev set's failure in miniature: fakes carry a faint generator trace (a +-1.5 checkerboard) and are PNGs,
    reals are JPEGs of the same picture maker. Trained on the files as they are, the detector learns the format and
    ranks a fake saved as JPEG below the reals; trained on format-matched fakes it finds the trace in both saves.
    The protocol signature names the setting only when it is on."""
    from sklearn.metrics import roc_auc_score

    from negate.pipeline import protocol_signature
    from negate.recipe import fit_recipe

    rng = np.random.default_rng(0)

    def generated() -> np.ndarray:
        pic = _smooth(rng).astype(float)
        return np.clip(pic + 1.5 * ((np.indices(pic.shape[:2]).sum(0) % 2) * 2 - 1)[..., None], 0, 255).astype(np.uint8)

    reals = [ImageRecord(_write(tmp_path / "real" / f"r{i}.jpg", _smooth(rng), quality=90), 0, "camera", f"s{i % 2}")
             for i in range(24)]
    fakes = [ImageRecord(_write(tmp_path / "fake" / f"f{i}.png", generated()), 1, "gen", "g") for i in range(24)]
    train, val = reals[:16] + fakes[:16], reals[16:20] + fakes[16:20]
    test_reals = [ImageRecord(_write(tmp_path / "test" / f"r{i}.jpg", _smooth(rng), quality=90), 0) for i in range(10)]
    pictures = [generated() for _ in range(10)]
    as_png = [ImageRecord(_write(tmp_path / "test" / f"f{i}.png", p), 1) for i, p in enumerate(pictures)]
    as_jpg = [ImageRecord(_write(tmp_path / "test" / f"f{i}.jpg", p, quality=90), 1) for i, p in enumerate(pictures)]

    auroc, gap = {}, {}
    for share in (0.0, 1.0):
        fitted = fit_recipe(_cfg(tmp_path, f"format_match.share={share}"), train, val, tmp_path / f"fit{share}")
        p_real, p_png, p_jpg = (fitted.score(r)[1] for r in (test_reals, as_png, as_jpg))
        auroc[share] = roc_auc_score([0] * len(p_real) + [1] * len(p_jpg), np.r_[p_real, p_jpg])
        gap[share] = float(np.mean(p_png - p_jpg))
    assert auroc[0.0] < 0.6 and gap[0.0] > 0.5  # the plain fit reads the format: a JPEG-saved fake looks real
    assert auroc[1.0] > 0.9 and gap[1.0] < gap[0.0] / 2
    assert len(list((tmp_path / "out" / "cache" / "format_matched").glob("*.jpg"))) == 16

    plain = protocol_signature(_cfg(tmp_path))
    assert protocol_signature(_cfg(tmp_path, "format_match.share=0")) == plain
    assert protocol_signature(_cfg(tmp_path, "format_match.share=1")) != plain


def test_negate_train_fits_on_format_matched_fakes(tmp_path):
    """``negate train`` (a single feature recipe) trains its classifier on the re-saved fakes too."""
    from negate.train import train

    reals, fakes = _set(tmp_path / "data", n_real=12, n_fake=12, seed=2)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "data=folder", f"data.path={tmp_path / 'data'}", f"paths.output_dir={tmp_path / 'out'}",
            f"paths.models_dir={tmp_path / 'models'}", "feature=[dct]", "encoder=none", "classifier=logreg",
            "patches.size=64", "patches.count=1", "data.reencode=none", "format_match.share=1", "split.test_fraction=0", "split.group_by=null",
            "eval.robustness=false"])
    train(cfg)
    matched = list((tmp_path / "out" / "cache" / "format_matched").glob("*.jpg"))
    assert matched and all(_tables(p)[0] == "JPEG" for p in matched)
    card = next((tmp_path / "models").glob("*/MODEL_CARD.md")).read_text()
    assert "re-saved with the JPEG tables of a training real with probability 1" in card
