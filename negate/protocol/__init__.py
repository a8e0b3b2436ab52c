"""The evaluation protocol, one place for ``negate train`` and ``negate evaluate`` (config group ``protocol``).

1. Held-out split (:mod:`.split`, ``split.*``): train / val / test, stratified by label, seeded; with
   ``split.group_by=source`` every source sits in one split, so test images come from sources training never saw.
2. Threshold (:mod:`.thresholds`, ``threshold.*``): chosen on validation predictions only, the lowest one whose FPR on
   validation reals is at most ``target_fpr``, also on the validation split seen through each of ``threshold.views``
   (re-saved, downscaled); ``uncertain_margin`` around it (in logit space) is the uncertain band.
3. Report (:func:`write_split_report`, rendered by :mod:`negate.evaluation.report`, ``eval.*``): the test split is
   scored once: metrics with bootstrap CIs, per generator / source / format, camera-photo FPR, robustness views.
4. Cross-validation (``protocol=cv``, ``cv.*``): leave-one-source/generator-out (:mod:`.loso`; in ``train`` with
   ``eval.loso=true``) or leave-one-family-out with a content-only baseline (:mod:`.families`); every fold takes its
   threshold from an inner grouped validation split, and predictions are pooled over folds.

This module holds the config-level steps; its submodules import nothing from the commands.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

PROTOCOLS = ("holdout", "cv")


def check_protocol(cfg: DictConfig) -> str:
    protocol = cfg.get("protocol", "holdout")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return protocol


def holdout_split(cfg: DictConfig, records) -> dict[str, np.ndarray]:
    """Sorted row indices ``{"train", "val", "test"}`` of ``records`` under ``split.*`` and ``seed``."""
    from negate.protocol.split import split_indices

    groups = [getattr(r, cfg.split.group_by) for r in records] if cfg.split.group_by else None
    return split_indices([r.label for r in records], groups, cfg.split.val_fraction, cfg.split.test_fraction, cfg.seed)


def threshold_views(cfg: DictConfig) -> list[str]:
    """``threshold.views``: the views of the validation split that must meet the threshold rule too."""
    return [str(v) for v in (cfg.threshold.get("views") or [])]


def threshold_rule(cfg: DictConfig) -> str:
    """The threshold rule in words, for model cards."""
    from negate.operating_points import rule_text

    return rule_text(cfg.threshold.method, cfg.threshold.target_fpr, threshold_views(cfg))


def fit_threshold(cfg: DictConfig, y_val, p_val, view_scores: dict | None = None) -> tuple[float, tuple[float, float]]:
    """The decision threshold from validation labels and probabilities, and its uncertain band (``threshold.*``).
    ``view_scores`` (``{view: (y, p)}``, the validation split seen through each of ``threshold.views``): the
    threshold is the highest of those chosen on the originals and on each view."""
    from negate.protocol.thresholds import choose_threshold, uncertain_band

    rule = (cfg.threshold.method, cfg.threshold.target_fpr)
    threshold = max([choose_threshold(y_val, p_val, *rule)] +
                    [choose_threshold(y, p, *rule) for y, p in (view_scores or {}).values()])
    return threshold, uncertain_band(threshold, cfg.threshold.uncertain_margin)


def camera_rows(cfg: DictConfig, records) -> np.ndarray:
    """Real rows whose generator column matches ``eval.camera_pattern`` (the dev set marks "camera photo (...)")."""
    pattern = re.compile(cfg.eval.camera_pattern) if cfg.eval.get("camera_pattern") else None
    return np.array([bool(pattern and r.label == 0 and pattern.search(r.generator)) for r in records], dtype=bool)


def robustness_sweep(runner, detector, records, y: np.ndarray) -> dict:
    """``{perturbation: (y, prob)}`` for the records seen through each perturbation of the robustness suite."""
    from negate.data.perturb import ROBUSTNESS_SUITE

    out = {}
    for spec in ROBUSTNESS_SUITE:
        kept, table = runner.features(records, spec)
        out[spec] = (y[kept], detector.predict_proba(table.X)[:, 1])
    return out


def write_split_report(cfg: DictConfig, out_dir: Path, records, y: np.ndarray, prob: np.ndarray, threshold: float,
                       title: str, **kwargs) -> dict:
    """``report.md``, ``metrics.json`` and plots of one scored set in ``out_dir``, with the protocol's bootstrap
    (``eval.n_boot``, ``seed``) and camera-photo rows; ``kwargs`` go to :func:`negate.evaluation.report.write_report`
    (``robustness``, ``extra``, ``warnings``)."""
    from negate.evaluation.report import write_report
    from negate.featureset import record_meta

    return write_report(out_dir, y, prob, threshold, record_meta(records), title, n_boot=cfg.eval.n_boot,
                        seed=cfg.seed, camera=camera_rows(cfg, records), **kwargs)


def refits_per_fold(cfg: DictConfig) -> bool:
    """Whether ``protocol=cv`` runs the fold protocol that refits the recipe (family folds, ``protocol=sources``)
    rather than leave-one-group-out on cached features."""
    return cfg.cv.group_by == "family" or bool(cfg.cv.get("refit"))


def cross_validate(cfg: DictConfig, run_dir: Path) -> dict:
    """``protocol=cv`` on the configured data and recipe: leave-one-``cv.group_by``-out; ``family`` (or
    ``cv.refit=true``, ``protocol=sources``) runs the fold protocol that refits the whole recipe per fold beside the
    content-only baseline. Writes ``<run_dir>/loso/`` or ``<run_dir>/families/``."""
    from negate.pipeline import protocol_signature

    if refits_per_fold(cfg):
        from negate.protocol.families import describe_results, headline, run_family_protocol

        results = run_family_protocol(cfg, run_dir)
        return {"families": headline(results), "signature": protocol_signature(cfg), "data": str(cfg.data.path),
                "protocol": describe_results(results)}
    from negate.featureset import load_feature_set
    from negate.pipeline import FeatureRunner, pipeline_from_cfg
    from negate.protocol.loso import loso

    runner = FeatureRunner(pipeline_from_cfg(cfg), cfg)
    fs = load_feature_set(cfg, runner, run_dir)
    return {"loso": loso(cfg, runner, fs, run_dir, cfg.cv.group_by), "signature": protocol_signature(cfg),
            "data": str(cfg.data.path)}


def report_path(cfg: DictConfig, run_dir: Path) -> Path:
    """Where the protocol's ``report.md`` of an ``evaluate`` run lies."""
    if check_protocol(cfg) == "holdout":
        return run_dir / "report.md"
    return run_dir / ("families" if refits_per_fold(cfg) else "loso") / "report.md"
