"""The content-controlled protocol: family folds that never leak, a content-only baseline on the same folds, pairs."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import write_labelled_folder
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from negate.data.records import ImageRecord
from negate.protocol.families import family_folds, headline, pairs_won, run_family_protocol
from negate.paths import CONFIG_DIR
from negate.pipeline import register_resolvers

register_resolvers()
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _records() -> list[ImageRecord]:
    recs = []
    for fam, n, src in (("A", 5, "s1"), ("B", 3, "s2"), ("C", 2, "s2"), ("D", 4, "mixed")):
        recs += [ImageRecord(f"{fam}{i}.png", 1, fam, src, {"family": fam, "era": "modern"}) for i in range(n)]
    recs += [ImageRecord(f"old{i}.png", 1, "GAN", "old", {"family": "GAN", "era": "gan"}) for i in range(6)]
    for src, n in (("r1", 8), ("r2", 5), ("r3", 3), ("mixed", 2), ("old", 2)):
        recs += [ImageRecord(f"{src}_{i}.jpg", 0, "real", src, {"family": "real", "era": "real"}) for i in range(n)]
    return recs


@pytest.mark.parametrize("n_folds", [None, 2])
def test_folds_hold_out_each_family_once_with_unseen_real_sources(n_folds):
    recs = _records()
    folds = family_folds(recs, "modern", n_folds)
    assert len(folds) == (4 if n_folds is None else 2)
    held = Counter(f for fold in folds for f in fold["families"])
    assert held == Counter({"A": 1, "B": 1, "C": 1, "D": 1})
    all_test = np.concatenate([f["test"] for f in folds])
    assert len(all_test) == len(set(all_test.tolist()))  # every test row in exactly one fold
    for fold in folds:
        test = set(fold["test"].tolist())
        train_sources = {recs[i].source for i in range(len(recs)) if i not in test and recs[i].label == 0}
        test_sources = {recs[i].source for i in test if recs[i].label == 0}
        assert not train_sources & test_sources  # reals come from sources no training real came from
        assert all(recs[i].extra["era"] != "gan" for i in test)  # older eras always train
        if "D" in fold["families"]:
            assert "mixed" in fold["real_sources"]  # a mixed source's reals go with its family
        # no training row shares a source with a test row: when the reals of "old" are tested, its gan-era fakes
        # (and s2's other family, when one s2 family is tested) sit out that fold instead of training
        train = set(fold["train"].tolist())
        assert not train & test and not {recs[i].source for i in train} & {recs[i].source for i in test}
        assert len(train) + len(test) + fold["n_left_out"] == len(recs)
    old_real_fold = next(f for f in folds if "old" in f["real_sources"])
    assert old_real_fold["n_left_out"] >= 6
    with pytest.raises(ValueError, match="at least 2 family"):
        family_folds(recs, "diffusion-2022")


def _family_manifest(tmp_path):
    image_folder = write_labelled_folder(tmp_path / "images", n_per_class=24, seed=3, sources=6)
    lines = ["path\tlabel\tgenerator\tsource\tfamily\tera\tcontent"]
    for path in sorted(image_folder.rglob("*")):
        if path.suffix not in (".jpg", ".png"):
            continue
        rel = path.relative_to(image_folder)
        label, src = rel.parts[0], rel.parts[1]
        family = "real" if label == "real" else f"fam{int(src[-1]) % 3}"
        era = "real" if label == "real" else ("modern" if family != "fam2" else "gan")
        generator = "camera photo (test)" if label == "real" else family
        lines.append(f"{rel}\t{label}\t{generator}\t{src}\t{family}\t{era}\tphoto")
    manifest = image_folder / "FAMILIES.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    pairs = tmp_path / "pairs"
    (pairs / "real").mkdir(parents=True)
    (pairs / "fake").mkdir()
    plines = ["path\tlabel\tpair\tsource\tedit\tchanged_fraction"]
    for i, (r, f) in enumerate(zip(sorted((image_folder / "real").rglob("*.jpg"))[:3],
                                   sorted((image_folder / "fake").rglob("*.png"))[:3])):
        (pairs / "real" / f"p{i}.jpg").write_bytes(r.read_bytes())
        (pairs / "fake" / f"p{i}.png").write_bytes(f.read_bytes())
        edit, changed = ("inpaint", 0.2) if i == 0 else ("regenerate", 0.9)
        plines += [f"real/p{i}.jpg\treal\tp{i}\tpairs\t{edit}\t{changed}",
                   f"fake/p{i}.png\tfake\tp{i}\tpairs\t{edit}\t{changed}"]
    (pairs / "MANIFEST.tsv").write_text("\n".join(plines) + "\n")
    return manifest, pairs / "MANIFEST.tsv"


def test_protocol_end_to_end_with_baseline_and_pairs(tmp_path):
    manifest, pairs = _family_manifest(tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[
            "protocol=cv", "cv.group_by=family", "cv.folds=null", "data=manifest", f"data.path={manifest}",
            f"paths.output_dir={tmp_path}", "feature=[spectral]", "encoder=none", "classifier=logreg",
            "classifier.C=1", "patches.size=64", "patches.count=1", "data.reencode=none", f"cv.pairs={pairs}",
            "cv.recon_pairs.pretrained=false", "cv.recon_pairs.region=64"])
    results = run_family_protocol(cfg, tmp_path / "run")
    folds = results["protocol"]["folds"]
    assert sorted(f for fold in folds for f in fold["families"]) == ["fam0", "fam1"]  # fam2 is era gan: trains
    for name in ("recipe", "content_baseline"):
        r = results[name]
        assert 0 <= r["overall"]["auroc"] <= 1 and r["n_scored"] > 0
        assert r["recon_pairs"]["n"] > 0 and r["pairs"]["n_images"] == 6
        assert set(r["per_family_detection"]) == {"fam0", "fam1"}
        for fam in r["per_family_detection"].values():  # each held-out family against every held-out real
            assert 0 <= fam["auroc"] <= 1 and 0 <= fam["detected"] <= 1 and fam["n"] > 0
    assert "auroc_jpeg75" in results["recipe"] and "auroc_jpeg75" not in results["content_baseline"]
    report = (tmp_path / "run" / "families" / "report.md").read_text()
    assert "content_baseline" in report and "fam0" in report and "baseline AUROC" in report
    saved = json.loads((tmp_path / "run" / "families" / "metrics.json").read_text())
    boot = saved["bootstrap"]  # fakes clustered by family, reals by source; recipe and baseline on the same draws
    assert boot["clusters"]["fake"] == 2 and set(boot["auroc"]) == {"recipe", "content_baseline"}
    lo, hi = boot["auroc"]["recipe"]
    assert lo <= results["recipe"]["overall"]["auroc"] <= hi
    assert "recipe - content_baseline" in boot["difference"] and "AUROC 95% intervals" in report
    by_edit = results["recipe"]["pairs"]["by_edit"]
    assert {k: v["pairs"] for k, v in by_edit.items()} == {"inpaint": 1, "regenerate": 2}
    assert by_edit["regenerate"]["changed_fraction"] == pytest.approx(0.9)
    assert "Content-matched pairs" in report and "changed < 0.5" in report
    with open(tmp_path / "run" / "families" / "pairs_predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {"recipe", "content_baseline", "edit", "pair"} <= set(rows[0])
    assert headline(results)["auroc_ci"] == [lo, hi] and len(headline(results)["margin_ci"]) == 2
    assert saved["recipe"]["camera_n"] > 0
    header = (tmp_path / "run" / "families" / "predictions.csv").read_text().splitlines()[0]
    assert "recipe:jpeg75" in header and "content_baseline:original" in header
    # the operating point after each perturbation: camera photos flagged at the fold thresholds, as predictions.csv says

    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "families" / "predictions.csv"))
            if r["recipe:original"] != "nan" and r["label"] == "0"]
    for view in ("jpeg75", "downscale0.5"):
        flagged = [float(r[f"recipe:{view}"]) >= float(r["threshold"]) for r in rows]
        assert saved["recipe"][f"at_fold_thresholds_{view}"]["camera_fpr"] == pytest.approx(np.mean(flagged))
        assert f"camera FPR {view}" in report
    assert "at_fold_thresholds_jpeg75" not in saved["content_baseline"]
    fakes = [r for r in csv.DictReader(open(tmp_path / "run" / "families" / "predictions.csv"))
             if r["recipe:original"] != "nan" and r["label"] == "1"]
    assert saved["recipe"]["by_fake_format"]["PNG"]["n"] == len(fakes)  # the fixture's fakes are all PNG
    assert "Held-out fakes by file format" in report
    _compare_runs(tmp_path / "run")


def _compare_runs(run):
    """scripts/compare_protocol_runs.py on this run: against itself the difference is nil in every draw; against a
    copy whose recipe ranks every fake first, the copy is ahead in every draw."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("compare_protocol_runs", SCRIPTS / "compare_protocol_runs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    same = script.compare(run, run, n_boot=200)
    assert same["difference"]["a - b"]["ci"] == [0.0, 0.0] and same["difference"]["a - b"]["share_le_0"] == 1.0
    assert same["point"]["a"] == pytest.approx(json.loads((run / "families" / "metrics.json").read_text())
                                               ["recipe"]["overall"]["auroc"])
    perfect = run.parent / "perfect"
    (perfect / "families").mkdir(parents=True)
    with open(run / "families" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["recipe:original"] != "nan":
            row["recipe:original"] = row["label"]
    with open(perfect / "families" / "predictions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    versus = script.compare(run, perfect, n_boot=200)
    assert versus["point"]["b"] == 1.0 and versus["difference"]["a - b"]["ci"][1] <= 0
    shutil.rmtree(perfect)


def test_fakes_by_file_format_are_scored_against_all_reals(tmp_path):
    """JPEG and PNG fakes apart: each AUROC against every held-out real, each detection at the row's own threshold."""
    from PIL import Image

    from negate.protocol.families import by_fake_format

    def write(name, fmt):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format=fmt)
        return ImageRecord(str(tmp_path / name), 0 if name.startswith("r") else 1)

    records = [write("r0.jpg", "JPEG"), write("r1.png", "PNG"), write("f0.png", "PNG"), write("f1.jpg", "JPEG"),
               write("f2.jpg", "PNG"), write("f3.jpg", "JPEG")]  # f2 is a PNG whatever its name says
    y = np.array([r.label for r in records])
    p = np.array([0.2, 0.4, 0.9, 0.3, 0.5, np.nan])
    thr = np.array([0.5, 0.5, 0.5, 0.25, 0.6, 0.5])
    out = by_fake_format(records, y, p, thr)
    assert out["PNG"] == {"n": 2, "auroc": 1.0, "detected": 0.5}  # f0 above both reals; f2 under its fold's 0.6
    assert out["JPEG"] == {"n": 1, "auroc": 0.5, "detected": 1.0}  # f1 between the reals, above its fold's 0.25


def test_rates_at_fold_thresholds_count_each_row_against_its_own_fold_threshold():
    from negate.protocol.families import _rates_at_thresholds

    prob = np.array([0.6, 0.4, 0.9, np.nan, 0.7, 0.2])
    threshold = np.array([0.5, 0.5, 0.95, 0.5, 0.6, 0.6])  # rows 0-3 one fold, 4-5 another
    y = np.array([0, 0, 0, 0, 1, 1])
    camera = np.array([True, True, False, True, False, False])
    rates = _rates_at_thresholds(prob, threshold, y, camera)
    assert rates == {"camera_fpr": 0.5, "fpr": pytest.approx(1 / 3), "tpr": 0.5}  # the NaN row is not scored


def test_source_folds_refit_the_recipe_over_all_eras(tmp_path):
    """protocol=sources: source-grouped folds over every era, each fold refitting the recipe beside the baseline."""
    from negate.protocol import cross_validate, report_path

    folds = family_folds(_records(), None, 3, "source")
    tested = np.concatenate([f["test"] for f in folds])
    assert sorted(tested.tolist()) == list(range(len(_records())))  # every row scored once, the old era included
    for fold in folds:
        test = set(fold["test"].tolist())
        held = {r.source for i, r in enumerate(_records()) if i in test}
        assert not held & {r.source for i, r in enumerate(_records()) if i not in test}  # no source on both sides

    manifest, _ = _family_manifest(tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[
            "protocol=sources", "cv.folds=3", "data=manifest", f"data.path={manifest}", f"paths.output_dir={tmp_path}",
            "feature=[spectral]", "encoder=none", "classifier=logreg", "classifier.C=1", "patches.size=64",
            "patches.count=1", "data.reencode=none", "cv.recon_pairs=null", "cv.perturbations=false"])
    assert cfg.protocol == "cv" and cfg.cv.group_by == "source" and cfg.cv.era is None and cfg.cv.refit
    out = cross_validate(cfg, tmp_path / "run")
    assert 0 <= out["families"]["auroc"] <= 1 and out["families"]["content_baseline_auroc"] is not None
    assert out["protocol"] == "sources held out in 3 grouped folds over all eras, pooled"  # the printed title
    report = report_path(cfg, tmp_path / "run").read_text()
    assert report.startswith("# Sources held out in 3 grouped folds over all eras, pooled") and "content_baseline" in report
    saved = json.loads((tmp_path / "run" / "families" / "metrics.json").read_text())
    assert {"fam0", "fam1", "fam2"} <= set(saved["recipe"]["per_family_detection"])  # the gan-era family is tested


def test_ensemble_recipe_under_the_protocol(tmp_path):
    """experiment=ensemble: every fold fits both named recipes on the same split; the score is their mean logit."""
    from negate.ensemble import member_cfg
    from negate.recipe import fit_recipe

    manifest, pairs = _family_manifest(tmp_path)
    small = "'patches.size=64','patches.count=1'"
    overrides = [
        "protocol=cv", "cv.group_by=family", "cv.folds=null", "data=manifest", f"data.path={manifest}",
        f"paths.output_dir={tmp_path}", "experiment=ensemble", "ensemble.members=[handcrafted,default]",
        f"+ensemble.overrides.handcrafted=[{small},'classifier.n_estimators=20']",
        f"+ensemble.overrides.default=[{small},'encoder.pretrained=false','encoder.batch_size=8']",
        "cv.content_baseline=null", "cv.perturbations=false", "cv.recon_pairs=null"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    hand = member_cfg(cfg, "handcrafted")
    assert list(hand.feature) == ["spectral", "laplacian", "npr", "dct"] and hand.data.reencode == "none"
    assert hand.patches.size == 64 and hand.data.path == str(manifest)  # caller's data, member's recipe
    assert member_cfg(cfg, "default").data.reencode == "jpeg90"
    from negate.recipe import content_baseline_cfg

    assert content_baseline_cfg(OmegaConf.merge(cfg, {"cv": {"content_baseline": {
        "encoder": "effnet_lite0", "classifier": {"_target_": "negate.classifiers.LogRegDetector"}}}})).get("ensemble") is None

    results = run_family_protocol(cfg, tmp_path / "run")
    assert 0 <= results["recipe"]["overall"]["auroc"] <= 1 and results["recipe"]["n_scored"] > 0

    records = [r for r in __import__("negate.pipeline", fromlist=["load_records"]).load_records(cfg.data)[0]]
    ens = fit_recipe(cfg, records[::2], records[1::2], tmp_path / "fit")
    assert ens.detector.kind == "ensemble" and [m.name for m in ens.members] == ["handcrafted", "default"]
    kept, prob = ens.score(records[1::2])
    member_scores = [dict(zip(*m.recipe.score(records[1::2]))) for m in ens.members]
    logit = np.mean([np.log(np.array([s[i] for i in kept]) / (1 - np.array([s[i] for i in kept])))
                     for s in member_scores], axis=0)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-logit)), rtol=1e-5)
    with pytest.raises(ValueError, match="at least two"):
        member_cfg_bad = cfg.copy()
        member_cfg_bad.ensemble.members = ["default"]
        fit_recipe(member_cfg_bad, records[::2], records[1::2], tmp_path / "bad")


def test_protocol_fits_train_on_the_augmented_views_like_negate_train(tmp_path):
    """``augment=robust`` adds seeded random views of the training images to every protocol fit, as ``negate train``
    does; the content-only baseline never augments."""
    from negate.featureset import augmented_views
    from negate.pipeline import FeatureRunner, load_records, pipeline_from_cfg
    from negate.recipe import content_baseline_cfg, fit_recipe

    manifest, _ = _family_manifest(tmp_path)
    overrides = ["protocol=cv", "data=manifest", f"data.path={manifest}", f"paths.output_dir={tmp_path}",
                 "experiment=handcrafted", "patches.size=64", "patches.count=1", "classifier.n_estimators=20",
                 "augment=robust", "augment.views=1"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
        plain_cfg = compose(config_name="evaluate", overrides=[*overrides[:-2], "augment=none"])
    records = load_records(cfg.data)[0]
    train, val = records[::2], records[1::2]
    X, owner = augmented_views(cfg, FeatureRunner(pipeline_from_cfg(cfg), cfg), train)
    assert sorted(owner.tolist()) == list(range(len(train))) and X.shape[0] == len(train)
    assert augmented_views(plain_cfg, FeatureRunner(pipeline_from_cfg(plain_cfg), plain_cfg), train) is None
    augmented = fit_recipe(cfg, train, val, tmp_path / "aug").score(val)[1]
    plain = fit_recipe(plain_cfg, train, val, tmp_path / "plain").score(val)[1]
    assert not np.allclose(augmented, plain)  # the extra rows changed the fit
    assert content_baseline_cfg(cfg).augment.kind == "none"


def test_threshold_views_hold_the_false_positive_rule_on_every_view(tmp_path):
    """``threshold.views``: the threshold also meets target_fpr on the validation split seen through each view (a
    re-saved or downscaled real photo), so it is the highest of the per-view thresholds; [] keeps the old rule and
    the old protocol signature."""
    from negate.pipeline import FeatureRunner, compose_view, load_records, pipeline_from_cfg, protocol_signature
    from negate.protocol.thresholds import choose_threshold
    from negate.recipe import fit_recipe

    manifest, _ = _family_manifest(tmp_path)
    overrides = ["protocol=cv", "data=manifest", f"data.path={manifest}", f"paths.output_dir={tmp_path}",
                 "feature=[spectral]", "encoder=none", "classifier=logreg", "classifier.C=1", "patches.size=64",
                 "patches.count=1", "data.reencode=none", "threshold.target_fpr=0.1"]
    views = ["jpeg:75", "downscale:0.5"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        plain_cfg = compose(config_name="evaluate", overrides=overrides)
        cfg = compose(config_name="evaluate", overrides=[*overrides, f"threshold.views=[{','.join(views)}]"])
    assert protocol_signature(plain_cfg) != protocol_signature(cfg)
    records = load_records(cfg.data)[0]
    train, val = records[::2], records[1::2]
    plain = fit_recipe(plain_cfg, train, val, tmp_path / "plain")
    robust = fit_recipe(cfg, train, val, tmp_path / "views")
    runner = FeatureRunner(pipeline_from_cfg(cfg), cfg)
    per_view = []
    for view in ["", *views]:
        kept, table = runner.features(val, compose_view(view, ""))
        y = np.array([val[i].label for i in kept])
        p = robust.detector.predict_proba(table.X)[:, 1]
        per_view.append(choose_threshold(y, p, "fpr", 0.1))
        assert (p[y == 0] >= robust.threshold).mean() <= 0.1  # the rule holds in every view
    assert robust.threshold == pytest.approx(max(per_view))
    assert plain.threshold == pytest.approx(per_view[0])  # same fit; only the threshold rule differs


def test_a_view_whose_reals_score_higher_raises_the_threshold():
    from negate.protocol import fit_threshold

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=["threshold.target_fpr=0.1", "threshold.uncertain_margin=0.05"])
    y = np.r_[np.zeros(20), np.ones(20)].astype(int)
    p = np.r_[np.linspace(0.0, 0.5, 20), np.linspace(0.6, 1.0, 20)]
    alone, _ = fit_threshold(cfg, y, p)
    downscaled = np.r_[np.linspace(0.2, 0.8, 20), np.linspace(0.7, 1.0, 20)]  # its reals drift up
    both, band = fit_threshold(cfg, y, p, {"downscale:0.5": (y, downscaled)})
    assert alone <= 0.6 < both and (downscaled[y == 0] >= both).mean() <= 0.1 and (p[y == 0] >= both).mean() == 0
    assert band[0] < both < band[1]


@pytest.mark.parametrize("threshold", [0.02, 0.3, 0.5, 0.75, 0.95, 0.999])
def test_the_uncertain_band_is_as_wide_in_logit_space_wherever_the_threshold_lies(threshold):
    """A band of +-0.1 in probability would reach 1.0 from a threshold of 0.9 and leave no probability for
    "synthetic"; in logit space it keeps both verdicts reachable."""
    from negate.protocol.thresholds import uncertain_band

    lo, hi = uncertain_band(threshold, 0.1)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert 0 < lo < threshold < hi < 1
    assert logit(hi) - logit(threshold) == pytest.approx(logit(threshold) - logit(lo)) == pytest.approx(logit(0.6))
    if threshold == 0.5:
        assert (lo, hi) == pytest.approx((0.4, 0.6))
    assert uncertain_band(threshold, 0) == (threshold, threshold)


def test_pairs_are_read_per_pair_per_edit_and_by_changed_share():
    def rec(pair, label, edit, changed):
        return ImageRecord(f"{pair}_{label}.png", label, "g", "s", {"pair": pair, "edit": edit,
                                                                      "changed_fraction": str(changed)})

    records = [rec("a", 0, "inpaint", 0.1), rec("a", 1, "inpaint", 0.1), rec("b", 0, "inpaint", 0.3),
               rec("b", 1, "inpaint", 0.3), rec("c", 0, "tryon", 0.7), rec("c", 1, "tryon", 0.7),
               rec("d", 0, "tryon", 0.9)]  # d lacks its fake: not a pair
    prob = np.array([0.2, 0.9, 0.6, 0.4, 0.1, 0.3, 0.5])
    out = pairs_won(records, prob)
    assert out["fake_above_real"] == pytest.approx(2 / 3)
    assert out["by_edit"]["inpaint"] == {"pairs": 2, "fake_above_real": 0.5, "changed_fraction": pytest.approx(0.2)}
    assert out["by_edit"]["tryon"]["pairs"] == 1 and out["by_edit"]["tryon"]["fake_above_real"] == 1.0
    assert out["by_change"]["changed < 0.5"]["pairs"] == 2 and out["by_change"]["changed >= 0.5"]["pairs"] == 1
    prob[1] = np.nan  # an image no fold could score drops its pair
    assert pairs_won(records, prob)["by_edit"]["inpaint"]["pairs"] == 1
