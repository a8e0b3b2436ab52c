"""``pretrain``: which features separate the classes on a dataset, before any model is trusted.

Uses the feature cache like ``train``; writes ranked per-feature AUROC and Cohen's d (``features_ranked.csv``) and
plots (per-class histograms of the top features, PCA by class and generator, correlations, XGBoost gain, per-family
AUROC) into the run folder.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from negate.analysis import analyse_features, print_ranked_table
from negate.pipeline import FeatureRunner, pipeline_from_cfg
from negate.training import load_feature_set


def pretrain(cfg: DictConfig, run_dir: Path) -> list[dict]:
    runner = FeatureRunner(pipeline_from_cfg(cfg), cfg)
    fs = load_feature_set(cfg, runner, run_dir)
    rows = analyse_features(fs.X, fs.y, fs.names, run_dir, groups=[r.generator for r in fs.records],
                            top_k=cfg.analysis.top_k, seed=cfg.seed)
    print_ranked_table(rows, n=cfg.analysis.print_rows)
    print(f"{len(fs.records)} images, {len(fs.names)} features; plots and features_ranked.csv in {run_dir}")
    return rows
