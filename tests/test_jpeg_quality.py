"""The last-save JPEG quality read from the quantisation tables, and the weak-evidence note ``negate infer`` adds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from negate.data.jpeg_quality import estimate_jpeg_quality, scaled_luma_table
from negate.infer import WEAK_EVIDENCE, WEAK_JPEG_QUALITY, _weak_jpeg_reason, summary
from negate.model_folder import LoadedModel


def _image() -> Image.Image:
    return Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype("uint8"))


@pytest.mark.parametrize("quality", [10, 35, 50, 75, 89, 90, 95, 100])
def test_pillow_saves_are_read_back_at_their_quality(tmp_path, quality):
    path = tmp_path / f"q{quality}.jpg"
    _image().save(path, quality=quality)
    assert estimate_jpeg_quality(path) == quality


def test_the_scaled_tables_follow_libjpeg():
    assert scaled_luma_table(50)[:4].tolist() == [16, 11, 10, 16]  # quality 50 is the standard table itself
    assert scaled_luma_table(100).tolist() == [1] * 64
    assert scaled_luma_table(1).max() == 255  # baseline tables are clipped to 8 bits


def test_files_that_are_not_readable_jpegs_have_no_quality(tmp_path):
    _image().save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    assert estimate_jpeg_quality(tmp_path / "a.png") is None
    assert estimate_jpeg_quality(tmp_path / "b.jpg") is None
    assert estimate_jpeg_quality(tmp_path / "missing.jpg") is None


def test_a_human_verdict_on_a_low_quality_jpeg_is_marked_weak(tmp_path):
    low, high, png = tmp_path / "low.jpg", tmp_path / "high.jpg", tmp_path / "x.png"
    _image().save(low, quality=WEAK_JPEG_QUALITY - 15)
    _image().save(high, quality=WEAK_JPEG_QUALITY)
    _image().save(png)
    reason = _weak_jpeg_reason(str(low))
    assert reason.startswith(WEAK_EVIDENCE) and f"~{WEAK_JPEG_QUALITY - 15}" in reason
    assert _weak_jpeg_reason(str(high)) == "" and _weak_jpeg_reason(str(png)) == ""
    rows = [{"path": str(low), "verdict": "human", "reason": _weak_jpeg_reason(str(low))},
            {"path": str(high), "verdict": "human", "reason": ""},
            {"path": str(png), "verdict": "synthetic", "reason": ""}]
    model = LoadedModel(Path("m"), None, {}, [], 0.5, (0.4, 0.6), {})
    text = summary(rows, model, Path("skipped.csv"), 32)
    assert text.splitlines()[0] == "3 scored (1 synthetic, 2 human, 0 uncertain), 0 skipped"
    assert f"1 of the human verdicts are JPEGs saved below quality {WEAK_JPEG_QUALITY}" in text
    assert "JPEGs saved below" not in summary(rows[1:], model, Path("skipped.csv"), 32)
