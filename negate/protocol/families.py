"""The content-controlled protocol: leave-one-family-out over the generator families of one era, with a
content-only baseline on the same folds.

Folds (:func:`family_folds`): the fakes of ``era`` (e.g. ``modern``) are grouped by ``family``; every family is
held out once (``folds=null``) or the families are dealt into ``folds`` balanced groups. Reals are dealt by
``source`` the same way (a source that also holds fakes of the era goes with its family), so each fold's test =
the held-out families' fakes + reals from sources no training image came from. Everything else trains: older
eras, other families, other sources, except rows that share a source with a test row (they are left out of that
fold: a source's older-era fakes must not train while its reals are tested). Inside the training part an inner
grouped split (by source) gives the validation records for early stopping and the fold's threshold; the test images
touch nothing but scoring.

Per recipe, pooled over folds: AUROC, AP, TPR at 1 % / 5 % FPR, the same after JPEG q75 and 0.5x downscaling,
detection per held-out family and camera-photo FPR at each fold's threshold (also after each perturbation: the
operating point must survive JPEG re-saving and downscaling of real photos), the photo-like fakes (``content=photo``) against all reals apart, and
content-matched pairs: each test real beside its aligned reconstruction (when the recipe's aligned cache has it)
and an external pairs manifest (``cv.pairs``: an AI edit beside its input photo). Beside every number, the
content-only baseline (:func:`negate.recipe.content_baseline_cfg`) scored on the same folds.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import roc_auc_score

from negate.data.records import ImageRecord, load_manifest
from negate.protocol.split import split_indices
from negate.evaluation.metrics import binary_metrics, cluster_bootstrap_auroc
from negate.evaluation.tables import markdown_table

log = logging.getLogger(__name__)

VIEWS = {"original": "", "jpeg75": "jpeg:75", "downscale0.5": "downscale:0.5"}


def _field(record: ImageRecord, name: str) -> str:
    if name in ("source", "generator"):
        return getattr(record, name)
    return str(record.extra.get(name, "") or "")


def family_folds(records: list[ImageRecord], era: str | None = "modern", n_folds: int | None = None,
                 group_by: str = "family") -> list[dict]:
    """``[{"families": [...], "real_sources": [...], "test": idx}, ...]``; see the module docstring."""
    eligible = [i for i, r in enumerate(records) if r.label == 1 and (not era or _field(r, "era") == era)]
    sizes = Counter(_field(records[i], group_by) or "unknown" for i in eligible)
    if len(sizes) < 2:
        raise ValueError(f"leave-one-{group_by}-out needs at least 2 {group_by} values among the fakes"
                         f"{f' of era {era!r}' if era else ''}; found {sorted(sizes)} (manifest columns "
                         f"{group_by!r} and 'era')")
    k = len(sizes) if not n_folds else min(int(n_folds), len(sizes))
    fold_of: dict[str, int] = {}
    load = [0] * k
    for fam, n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        fold_of[fam] = int(np.argmin(load))
        load[fold_of[fam]] += n
    # reals: a source holding fakes of the era goes with its biggest family; the rest balance the real counts
    source_family: dict[str, Counter] = defaultdict(Counter)
    for i in eligible:
        source_family[records[i].source][_field(records[i], group_by) or "unknown"] += 1
    real_sizes = Counter(r.source for r in records if r.label == 0)
    real_fold: dict[str, int] = {}
    real_load = [0] * k
    for src, n in sorted(real_sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        if src in source_family:
            real_fold[src] = fold_of[source_family[src].most_common(1)[0][0]]
        else:
            real_fold[src] = int(np.argmin(real_load))
        real_load[real_fold[src]] += n
    folds = []
    for f in range(k):
        test = [i for i in eligible if fold_of[_field(records[i], group_by) or "unknown"] == f]
        test += [i for i, r in enumerate(records) if r.label == 0 and real_fold[r.source] == f]
        # no training row shares a source with a test row: a source's older-era fakes (or another family's fakes)
        # would otherwise train while its reals (or fakes) are tested, and the model would score the source, not
        # the image
        test_sources = {records[i].source for i in test}
        held = set(test)
        train = [i for i, r in enumerate(records) if i not in held and r.source not in test_sources]
        folds.append({"families": sorted(fam for fam, g in fold_of.items() if g == f),
                      "real_sources": sorted(s for s, g in real_fold.items() if g == f),
                      "test": np.array(sorted(test), dtype=int), "train": np.array(train, dtype=int),
                      "n_left_out": len(records) - len(test) - len(train)})
    return folds


def _inner_split(records: list[ImageRecord], rest: np.ndarray, val_fraction: float, seed: int):
    y = np.array([records[i].label for i in rest])
    groups = [records[i].source for i in rest]
    inner = split_indices(y, groups, val_fraction=val_fraction, test_fraction=0.0, seed=seed)
    return rest[inner["train"]], rest[inner["val"]]


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    ok = ~np.isnan(p)
    y, p = y[ok], p[ok]
    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan")


def _pairs_records(manifest: str | None) -> list[ImageRecord]:
    if not manifest:
        return []
    path = Path(manifest)
    if not path.is_file():
        log.warning("cv.pairs: %s not found; content-matched pairs are not scored", path)
        return []
    return load_manifest(path, source_from="column")


class _Pooled:
    """Out-of-fold probabilities of one recipe for every dataset row and view."""

    def __init__(self, n: int):
        self.prob = {v: np.full(n, np.nan) for v in VIEWS}
        self.threshold = np.full(n, np.nan)
        self.recon: list[tuple[float, float]] = []  # (real crop, its reconstruction)
        self.pairs: list[np.ndarray] = []  # per fold: probabilities of the pairs records
        self.folds: list[dict] = []


def _score_fold(pooled: _Pooled, recipe, records, test, views, recon_crops, pairs_records, fold_info):
    test_recs = [records[i] for i in test]
    for name in views:
        kept, prob = recipe.score(test_recs, VIEWS[name])
        pooled.prob[name][test[kept]] = prob
    pooled.threshold[test] = recipe.threshold
    if recon_crops:
        reals = [ImageRecord(c.real_crop, 0) for c in recon_crops]
        fakes = [ImageRecord(c.path, 1) for c in recon_crops]
        kr, pr = recipe.score(reals)
        kf, pf = recipe.score(fakes)
        both = sorted(set(kr) & set(kf))
        pr_of, pf_of = dict(zip(kr, pr)), dict(zip(kf, pf))
        pooled.recon += [(pr_of[i], pf_of[i]) for i in both]
    if pairs_records:
        kept, prob = recipe.score(pairs_records)
        full = np.full(len(pairs_records), np.nan)
        full[kept] = prob
        pooled.pairs.append(full)
    pooled.folds.append({**fold_info, "threshold": float(recipe.threshold)})


def _rates_at_thresholds(prob: np.ndarray, threshold: np.ndarray, y: np.ndarray, is_camera: np.ndarray) -> dict:
    """Camera-photo FPR, FPR on all reals and TPR of one perturbed view at each fold's threshold (chosen on the
    fold's validation split): whether the operating point survives what happens to shared photos."""
    ok = ~np.isnan(prob)
    flagged = prob >= threshold
    cam, real, fake = ok & is_camera, ok & (y == 0), ok & (y == 1)
    rate = lambda m: float(flagged[m].mean()) if m.any() else float("nan")  # noqa: E731
    return {"camera_fpr": rate(cam), "fpr": rate(real), "tpr": rate(fake)}


def by_fake_format(records, y: np.ndarray, p: np.ndarray, threshold: np.ndarray) -> dict:
    """Held-out fakes by file format (JPEG, PNG, ...): AUROC against all held-out reals, and the share detected at
    the fold thresholds. A detector that learned the format finds the PNG fakes and misses the JPEG ones."""
    from negate.data.index import file_format

    fmt = np.array([file_format(r.path) if label == 1 else "" for r, label in zip(records, y)])
    return fakes_by(fmt, y, p, threshold)


def fakes_by(group: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: np.ndarray) -> dict:
    """Held-out fakes split by ``group`` (one value per row; reals' values unused): per group its count, AUROC
    against all held-out reals and the share detected at the fold thresholds."""
    ok = ~np.isnan(p)
    real = ok & (y == 0)
    out = {}
    for name in sorted(set(group[ok & (y == 1)].tolist())):
        fake = ok & (y == 1) & (group == name)
        out[name] = {"n": int(fake.sum()), "auroc": _auroc(y[real | fake], p[real | fake]),
                     "detected": float((p[fake] >= threshold[fake]).mean())}
    return out


def _summary(pooled: _Pooled, records, y, is_camera, is_photo, pairs_records, views) -> dict:
    p = pooled.prob["original"]
    ok = ~np.isnan(p)
    rates = _rates_at_thresholds(p, pooled.threshold, y, is_camera)
    out = {"overall": binary_metrics(y[ok], p[ok]), "n_scored": int(ok.sum())}
    for name in views:
        if name != "original":
            out[f"auroc_{name}"] = _auroc(y, pooled.prob[name])
            out[f"at_fold_thresholds_{name}"] = _rates_at_thresholds(pooled.prob[name], pooled.threshold, y, is_camera)
    photo = ok & (is_photo | (y == 0))
    out["auroc_photo_content"] = _auroc(y[photo], p[photo])
    out["fpr_at_fold_thresholds"], out["camera_fpr"] = rates["fpr"], rates["camera_fpr"]
    out["camera_n"] = int((ok & is_camera).sum())
    out["tpr_at_fold_thresholds"] = rates["tpr"]
    family = np.array([_field(r, "family") for r in records])
    out["per_family_detection"] = fakes_by(family, y, p, pooled.threshold)
    out["by_fake_format"] = by_fake_format(records, y, p, pooled.threshold)
    if pooled.recon:
        r = np.array(pooled.recon)
        out["recon_pairs"] = {"n": len(r), "auroc": _auroc(np.r_[np.zeros(len(r)), np.ones(len(r))], np.r_[r[:, 0], r[:, 1]]),
                              "fake_above_real": float((r[:, 1] > r[:, 0]).mean())}
    if pooled.pairs:
        mean_prob = pairs_mean_prob(pooled)
        y_pairs = np.array([rec.label for rec in pairs_records])
        per_fold = [_auroc(y_pairs, fp) for fp in pooled.pairs]
        out["pairs"] = {"n_images": int((~np.isnan(mean_prob)).sum()), "auroc_fold_mean": float(np.nanmean(per_fold)),
                        "auroc_fold_ensemble": _auroc(y_pairs, mean_prob), **pairs_won(pairs_records, mean_prob)}
    return out


def pairs_mean_prob(pooled: _Pooled) -> np.ndarray:
    """Each pairs image's probability averaged over the fold models (NaN where no fold scored it)."""
    return np.nanmean(np.vstack(pooled.pairs), axis=0)


def pairs_won(pairs_records, prob: np.ndarray) -> dict:
    """Per-pair reading of the content-matched pairs (what they are built for: the AI edit against its own input
    photo, so no between-pair content enters): the share of pairs whose fake scores above its real, overall
    (``fake_above_real``), per ``edit`` of the manifest (with the mean ``changed_fraction``), and for pairs that change
    less / at least half of the image (``by_change``; a local edit pastes most of the real photo back)."""
    by_pair: dict = defaultdict(dict)
    for rec, pr in zip(pairs_records, prob):
        by_pair[rec.extra.get("pair", rec.path)][rec.label] = (pr, rec)
    by_edit: dict = defaultdict(list)  # (fake above real, changed fraction or None) per complete pair
    by_change: dict = defaultdict(list)
    for v in by_pair.values():
        if 0 not in v or 1 not in v or np.isnan([v[0][0], v[1][0]]).any():
            continue
        fake = v[1][1]
        raw = fake.extra.get("changed_fraction")
        item = (v[1][0] > v[0][0], None if raw in (None, "") else float(raw))
        by_edit[fake.extra.get("edit") or "unspecified"].append(item)
        if item[1] is not None:
            by_change["changed < 0.5" if item[1] < 0.5 else "changed >= 0.5"].append(item)

    def share(items) -> dict:
        changed = [c for _, c in items if c is not None]
        return {"pairs": len(items), "fake_above_real": float(np.mean([w for w, _ in items])),
                "changed_fraction": float(np.mean(changed)) if changed else float("nan")}

    wins = [w for items in by_edit.values() for w, _ in items]
    return {"fake_above_real": float(np.mean(wins)) if wins else float("nan"),
            "by_edit": {e: share(v) for e, v in sorted(by_edit.items())},
            "by_change": {k: share(v) for k, v in sorted(by_change.items())}}


def run_family_protocol(cfg: DictConfig, run_dir: Path) -> dict:
    """Run the protocol for the composed recipe and its content-only baseline; write ``families/report.md``."""
    from negate.finetune.fit import build_aligned
    from negate.pipeline import load_records
    from negate.recipe import content_baseline_cfg, finetune_enabled, fit_recipe
    from negate.featureset import write_skipped
    from negate.protocol import camera_rows

    proto = cfg.cv
    records, skipped = load_records(cfg.data)
    write_skipped(run_dir, list(skipped.items()))
    folds = family_folds(records, proto.get("era"), proto.get("folds"), proto.get("group_by", "family"))
    y = np.array([r.label for r in records], dtype=int)
    is_camera = camera_rows(cfg, records)
    is_photo = np.array([_field(r, "content") == "photo" for r in records])
    pairs_records = _pairs_records(proto.get("pairs"))
    out_dir = Path(run_dir) / "families"
    out_dir.mkdir(parents=True, exist_ok=True)

    recipes = {"recipe": (cfg, "")}
    if proto.get("content_baseline"):
        recipes["content_baseline"] = (content_baseline_cfg(cfg), "lowpass:64")
    aligned_cfg = OmegaConf.to_container(cfg.finetune.aligned, resolve=True) if finetune_enabled(cfg) and \
        cfg.finetune.get("aligned") else None
    eval_aligned_cfg = aligned_cfg or (OmegaConf.to_container(proto.recon_pairs, resolve=True)
                                       if proto.get("recon_pairs") else None)
    recon = build_aligned([r for r in records if r.label == 0], eval_aligned_cfg, cfg.paths.cache_dir,
                          int(cfg.data.get("max_pixels", 64_000_000))) if eval_aligned_cfg else {}
    pooled = {name: _Pooled(len(records)) for name in recipes}
    views = list(VIEWS) if proto.get("perturbations", True) else ["original"]
    for f, fold in enumerate(folds):
        test = fold["test"]
        tr, va = _inner_split(records, fold["train"], cfg.split.val_fraction, int(cfg.seed))
        info = {"fold": f, "families": fold["families"], "real_sources": fold["real_sources"],
                "n_test": int(len(test)), "n_test_fake": int(y[test].sum()), "n_train": int(len(tr)),
                "n_val": int(len(va)), "n_left_out": fold["n_left_out"]}
        log.info("fold %d/%d: hold out %s + reals of %s (%d test, %d train, %d val; %d rows of test sources left "
                 "out)", f + 1, len(folds), fold["families"], fold["real_sources"], len(test), len(tr), len(va),
                 fold["n_left_out"])
        test_recon = [c for i in test if y[i] == 0 for c in recon.get(records[i].path, [])]
        for name, (rcfg, base_view) in recipes.items():
            recipe = fit_recipe(rcfg, [records[i] for i in tr], [records[i] for i in va], out_dir / f"fold{f}" / name,
                                base_view=base_view)
            _score_fold(pooled[name], recipe, records, test, views if name == "recipe" else ["original"],
                        test_recon, pairs_records, info)
    results = {name: _summary(pooled[name], records, y, is_camera, is_photo, pairs_records,
                              views if name == "recipe" else ["original"]) for name in recipes}
    if proto.get("bootstrap"):
        results["bootstrap"] = auroc_intervals(records, y, {n: pooled[n].prob["original"] for n in recipes},
                                               int(proto.bootstrap), int(cfg.seed))
    results["protocol"] = {"era": proto.get("era"), "group_by": proto.get("group_by", "family"),
                           "folds": pooled["recipe"].folds,
                           "n_records": len(records), "pairs": proto.get("pairs")}
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=1, default=float))
    (out_dir / "report.md").write_text(render_report(results))
    _save_predictions(out_dir / "predictions.csv", records, pooled)
    if pairs_records:
        _save_pairs_predictions(out_dir / "pairs_predictions.csv", pairs_records, pooled)
    return results


def auroc_intervals(records, y: np.ndarray, probs: dict[str, np.ndarray], n_boot: int, seed: int) -> dict:
    """95% intervals of the pooled AUROC of each recipe and of its margin over the content baseline, from
    :func:`cluster_bootstrap_auroc` with the fakes clustered by family and the reals by source: five folds of 21
    families and a few dozen sources are a small sample of generators and cameras, and the interval says how small."""
    groups = interval_clusters(y, [_field(r, "family") for r in records], [r.source or r.path for r in records])
    return cluster_bootstrap_auroc(y, probs, groups, n_boot=n_boot, seed=seed)


def interval_clusters(y, families, sources) -> list[str]:
    """The clusters the intervals redraw whole: a fake's generator family, a real's source."""
    return [family if label == 1 else source for label, family, source in zip(y, families, sources)]


def _save_predictions(path: Path, records, pooled: dict) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        names = [(n, v) for n in pooled for v in VIEWS if not np.isnan(pooled[n].prob[v]).all()]
        w.writerow(["path", "label", "source", "family", "era", "content", *(f"{n}:{v}" for n, v in names),
                    "threshold"])
        for i, r in enumerate(records):
            w.writerow([r.path, r.label, r.source, _field(r, "family"), _field(r, "era"), _field(r, "content"),
                        *(f"{pooled[n].prob[v][i]:.6f}" for n, v in names), f"{pooled['recipe'].threshold[i]:.6f}"])


def _save_pairs_predictions(path: Path, pairs_records, pooled: dict) -> None:
    """Each pairs image's fold-mean probability per model, beside its pair, edit and changed fraction."""
    import csv

    probs = {n: pairs_mean_prob(p) for n, p in pooled.items() if p.pairs}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "pair", "edit", "changed_fraction", *probs])
        for i, r in enumerate(pairs_records):
            w.writerow([r.path, r.label, r.extra.get("pair", ""), r.extra.get("edit", ""),
                        r.extra.get("changed_fraction", ""), *(f"{p[i]:.6f}" for p in probs.values())])


def headline(results: dict) -> dict:
    """The numbers a recipe is chosen by (one row of the README table)."""
    r, b = results["recipe"], results.get("content_baseline", {})
    row = {"auroc": r["overall"]["auroc"], "auroc_jpeg75": r.get("auroc_jpeg75"),
           "auroc_downscale0.5": r.get("auroc_downscale0.5"), "tpr@5%fpr": r["overall"].get("tpr_at_5fpr"), "auroc_photo": r["auroc_photo_content"],
           "camera_fpr": r["camera_fpr"], "content_baseline_auroc": b.get("overall", {}).get("auroc")}
    for name in VIEWS:
        if f"at_fold_thresholds_{name}" in r:
            row[f"camera_fpr_{name}"] = r[f"at_fold_thresholds_{name}"]["camera_fpr"]
    if "recon_pairs" in r:
        row["recon_pairs_auroc"] = r["recon_pairs"]["auroc"]
    if "pairs" in r:
        row["pairs_auroc"] = r["pairs"]["auroc_fold_ensemble"]
    row.update(interval_fields(results))
    return row


def interval_fields(results: dict) -> dict:
    """``auroc_ci`` and ``margin_ci`` (over the content baseline) of a run that drew them, else nothing."""
    boot = results.get("bootstrap")
    if not boot:
        return {}
    out = {"auroc_ci": boot["auroc"]["recipe"]}
    margin = boot["difference"].get("recipe - content_baseline")
    if margin:
        out["margin_ci"] = margin["ci"]
    return out


def describe_protocol(group_by: str, era: str | None, n_folds: int) -> str:
    """One line naming the folds, e.g. "leave-one-family-out over era modern (5 folds, no source on both sides),
    pooled" or "sources held out in 5 grouped folds over all eras, pooled"."""
    over = f"era {era}" if era else "all eras"
    if group_by == "family":  # rows recorded before sources were kept off both sides read "(5 folds), pooled"
        return f"leave-one-family-out over {over} ({n_folds} folds, no source on both sides), pooled"
    return f"{group_by}s held out in {n_folds} grouped folds over {over}, pooled"


def describe_results(results: dict) -> str:
    """:func:`describe_protocol` of a finished run (its ``results["protocol"]``)."""
    proto = results["protocol"]
    return describe_protocol(proto["group_by"], proto["era"], len(proto["folds"]))


def describe_intervals(boot: dict) -> str:
    """One sentence of the report: the AUROC intervals and the margin's."""
    parts = [f"{name} [{lo:.3f}, {hi:.3f}]" for name, (lo, hi) in boot["auroc"].items()]
    for name, d in boot["difference"].items():
        parts.append(f"{name} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] (<= 0 in {d['share_le_0']:.1%} of draws)")
    return (f"AUROC 95% intervals ({boot['n_boot']} draws of whole clusters: {boot['clusters']['fake']} fake families, "
            f"{boot['clusters']['real']} real sources, paired): " + "; ".join(parts) + ".")


def render_report(results: dict) -> str:
    proto = results["protocol"]
    title = describe_results(results)
    lines = [f"# {title[0].upper() + title[1:]} ({proto['n_records']} records)", "",
             f"Each fold's test = the fakes of its held-out {proto['group_by']} groups + reals from sources held out "
             "of training; pooled out-of-fold predictions. Content-only baseline: the same folds, images reduced to "
             "64 px and back.", ""]
    rows = []
    for name in ("recipe", "content_baseline"):
        if name not in results:
            continue
        r = results[name]
        o = r["overall"]
        rows.append({"model": name, "AUROC": o["auroc"], "AP": o["ap"], "TPR@1%FPR": o.get("tpr_at_1fpr"),
                     "TPR@5%FPR": o.get("tpr_at_5fpr"), "AUROC JPEG q75": r.get("auroc_jpeg75"),
                     "AUROC 0.5x": r.get("auroc_downscale0.5"), "AUROC photo-content": r["auroc_photo_content"],
                     "camera FPR": r["camera_fpr"], "FPR (fold thr.)": r["fpr_at_fold_thresholds"],
                     "TPR (fold thr.)": r["tpr_at_fold_thresholds"],
                     **{f"camera FPR {v}": r[f"at_fold_thresholds_{v}"]["camera_fpr"]
                        for v in VIEWS if f"at_fold_thresholds_{v}" in r},
                     "recon pairs AUROC": r.get("recon_pairs", {}).get("auroc"),
                     "pairs AUROC": r.get("pairs", {}).get("auroc_fold_ensemble")})
    lines += [markdown_table(rows, list(rows[0])), ""]
    if "bootstrap" in results:
        lines += [describe_intervals(results["bootstrap"]), ""]
    lines += ["## Held-out families (AUROC against all held-out reals; detected at fold thresholds)", ""]
    fam = results["recipe"]["per_family_detection"]
    base = results.get("content_baseline", {}).get("per_family_detection", {})
    lines.append(markdown_table([{"family": f, "n": v["n"], "AUROC": v["auroc"], "detected": v["detected"],
                                  "baseline AUROC": base.get(f, {}).get("auroc"),
                                  "baseline detected": base.get(f, {}).get("detected")} for f, v in fam.items()],
                                ["family", "n", "AUROC", "detected", "baseline AUROC", "baseline detected"]))
    lines += ["", "## Held-out fakes by file format (AUROC against all held-out reals; detected at fold thresholds)", ""]
    fmt = results["recipe"].get("by_fake_format", {})
    base = results.get("content_baseline", {}).get("by_fake_format", {})
    lines.append(markdown_table([{"format": f, "n": v["n"], "AUROC": v["auroc"], "detected": v["detected"],
                                  "baseline AUROC": base.get(f, {}).get("auroc")} for f, v in fmt.items()],
                                ["format", "n", "AUROC", "detected", "baseline AUROC"]))
    pairs = results["recipe"].get("pairs", {})
    if pairs.get("by_edit"):
        base = results.get("content_baseline", {}).get("pairs", {})
        lines += ["", f"## Content-matched pairs: share of pairs whose AI edit scores above its input photo "
                  f"(recipe {pairs['fake_above_real']:.3f}, baseline {base.get('fake_above_real', float('nan')):.3f})",
                  ""]
        rows = [{"edit": k, "pairs": v["pairs"], "changed fraction": v["changed_fraction"],
                 "fake above real": v["fake_above_real"],
                 "baseline": base.get(group, {}).get(k, {}).get("fake_above_real")}
                for group in ("by_edit", "by_change") for k, v in pairs[group].items()]
        lines.append(markdown_table(rows, ["edit", "pairs", "changed fraction", "fake above real", "baseline"]))
    lines += ["", "## Folds", ""]
    lines.append(markdown_table([{"fold": fi["fold"], "families": ", ".join(fi["families"]),
                                  "real sources": ", ".join(fi["real_sources"]), "test": fi["n_test"],
                                  "test fakes": fi["n_test_fake"], "threshold": fi["threshold"]}
                                 for fi in proto["folds"]],
                                ["fold", "families", "real sources", "test", "test fakes", "threshold"]))
    return "\n".join(lines) + "\n"
