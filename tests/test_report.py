"""Report writer: files, numbers in metrics.json, Markdown tables, wandb offline logging."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from negate.evaluation.metrics import binary_metrics
from negate.evaluation.report import log_report_to_wandb, markdown_table, write_report


def synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.45).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) * 1.2 + 1.5 * (2 * y - 1))))
    meta = {
        "generator": np.where(y == 1, rng.choice(["SDXL", "Midjourney", "StyleGAN2"], n), "real"),
        "source": rng.choice(["flickr_photos", "civitai", "museum|scans"], n),
        "format": rng.choice(["JPEG", "PNG"], n),
        "path": [f"data/img_{i:04d}.png" for i in range(n)],
    }
    return y, p, meta


def strict_json(path):
    def reject(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    y, p, meta = synthetic()
    rng = np.random.default_rng(1)
    robustness = {
        "jpeg:75": (y, np.clip(p + rng.normal(0, 0.05, y.size), 0, 1)),
        "downscale:0.5": (y, np.clip(p * 0.5 + 0.25 + rng.normal(0, 0.2, y.size), 0, 1)),
    }
    metrics = write_report(out, y, p, 0.5, meta, "Synthetic test", robustness=robustness,
                           extra={"model": "xgb", "features": ["spectral"]}, n_boot=200)
    return out, y, p, meta, metrics


def test_files_written_and_plots_readable(report):
    out, *_, metrics = report
    assert (out / "report.md").stat().st_size > 0
    expected = {"roc.png", "pr.png", "calibration.png", "per_generator.png", "per_source_fpr.png", "robustness.png"}
    assert set(metrics["plots"]) == expected
    for name in expected:
        with Image.open(out / name) as im:
            im.load()
            assert im.width > 300 and im.height > 200
            # a real drawing, not a blank canvas
            assert np.asarray(im.convert("L")).std() > 5


def test_metrics_match_direct_computation(report):
    out, y, p, meta, metrics = report
    direct = binary_metrics(y, p, 0.5)
    for key, value in direct.items():
        assert metrics["overall"][key] == pytest.approx(value)
    for key in ("auroc", "accuracy", "ap"):
        lo, hi = metrics["ci"][key]
        assert lo <= direct[key] <= hi
    c = metrics["confusion"]
    assert c["tp"] + c["fn"] == y.sum() and c["tn"] + c["fp"] == (y == 0).sum()
    gens = {r["group"]: r for r in metrics["per_generator"]}
    m = np.asarray(meta["generator"]) == "SDXL"
    assert gens["SDXL"]["detection_rate"] == pytest.approx((p[m] >= 0.5).mean())
    assert metrics["robustness"]["jpeg:75"]["delta_auroc"] == pytest.approx(
        metrics["robustness"]["jpeg:75"]["auroc"] - direct["auroc"]
    )
    fps = metrics["mistakes"]["false_positives"]
    assert all(f["prob"] >= 0.5 for f in fps)
    assert [f["prob"] for f in fps] == sorted((f["prob"] for f in fps), reverse=True)
    assert fps[0]["prob"] == pytest.approx(p[(y == 0)].max())


def test_metrics_json_is_strict_and_complete(report):
    out, *_, metrics = report
    data = strict_json(out / "metrics.json")
    assert data["overall"]["auroc"] == pytest.approx(metrics["overall"]["auroc"])
    assert data["extra"] == {"model": "xgb", "features": ["spectral"]}
    assert {"ci", "confusion", "per_generator", "per_source", "per_format", "robustness", "mistakes"} <= set(data)
    # generator "real" has no fakes: NaN detection rate must come out as null
    real_row = next(r for r in data["per_generator"] if r["group"] == "real")
    assert real_row["detection_rate"] is None


def test_markdown_sections(report):
    out, *_ = report
    md = (out / "report.md").read_text()
    for heading in ("## Main metrics", "## Confusion matrix", "## Detection rate per generator",
                    "## False-positive rate per source", "## Per file format", "## Robustness",
                    "## Most confident mistakes", "## Run details", "## Plots"):
        assert heading in md
    assert "| SDXL |" in md and "museum\\|scans" in md and "downscale:0.5" in md
    assert "![roc.png](roc.png)" in md


def test_single_class_report(tmp_path):
    y = np.zeros(30, dtype=int)
    p = np.linspace(0.01, 0.99, 30)
    metrics = write_report(tmp_path, y, p, 0.5, {"source": ["a"] * 30}, "reals only", n_boot=50)
    assert math.isnan(metrics["overall"]["auroc"])
    assert strict_json(tmp_path / "metrics.json")["overall"]["auroc"] is None
    assert "per_source_fpr.png" in metrics["plots"]
    assert (tmp_path / "roc.png").stat().st_size > 0


def test_meta_length_mismatch(tmp_path):
    y, p, meta = synthetic(n=50)
    with pytest.raises(ValueError, match="generator"):
        write_report(tmp_path, y, p, 0.5, {"generator": meta["generator"][:-1]}, "bad", n_boot=10)


def test_markdown_table_formatting():
    rows = [{"name": "a|b", "x": 0.12345, "n": 7, "ci": (0.1, 0.2)}, {"name": "c", "x": float("nan")}]
    text = markdown_table(rows, {"name": "Name", "x": "X", "n": "count", "ci": "CI"})
    lines = text.strip().splitlines()
    assert lines[0] == "| Name | X | count | CI |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| a\\|b | 0.123 | 7 | [0.100, 0.200] |"
    assert lines[3] == "| c | – |  |  |"
    assert markdown_table([{"k": 1}], ["k"]).splitlines()[0] == "| k |"


def test_log_report_to_wandb_offline(tmp_path, monkeypatch, report):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out, *_, metrics = report
    run = wandb.init(dir=str(tmp_path), mode="offline", project="negate-test")
    try:
        log_report_to_wandb(run, metrics, out)
        assert run.summary["test/auroc"] == pytest.approx(metrics["overall"]["auroc"])
        assert run.summary["test/auroc_ci_lo"] == pytest.approx(metrics["ci"]["auroc"][0])
    finally:
        run.finish()
    images = list((tmp_path / "wandb").glob("offline-run-*/files/media/images/**/*.png"))
    assert {p.name.split("_0_")[0] for p in images} >= {"roc", "pr", "calibration", "robustness"}
    assert list((tmp_path / "wandb").glob("offline-run-*/files/media/table/**/per_generator*.table.json"))
