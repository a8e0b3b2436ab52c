"""``negate pretrain`` / ``python -m negate.pretrain [data=...] [feature=[...]]``: which features separate the classes
on a dataset, before any model is trusted.

Uses the feature cache like ``train``; writes ranked per-feature AUROC and Cohen's d (``features_ranked.csv``) and
plots (per-class histograms of the top features, PCA by class and generator, correlations, XGBoost gain, per-family
AUROC) into the run folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from negate.analysis import analyse_features, print_ranked_table
from negate.featureset import load_feature_set
from negate.paths import CONFIG_DIR
from negate.pipeline import FeatureRunner, pipeline_from_cfg, register_resolvers

register_resolvers()


def pretrain(cfg: DictConfig, run_dir: Path) -> list[dict]:
    runner = FeatureRunner(pipeline_from_cfg(cfg), cfg)
    fs = load_feature_set(cfg, runner, run_dir)
    rows = analyse_features(fs.X, fs.y, fs.names, run_dir, groups=[r.generator for r in fs.records],
                            top_k=cfg.analysis.top_k, seed=cfg.seed)
    print_ranked_table(rows, n=cfg.analysis.print_rows)
    print(f"{len(fs.records)} images, {len(fs.names)} features; plots and features_ranked.csv in {run_dir}")
    return rows


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="pretrain")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from negate.cache import CacheWriteError

    try:
        pretrain(cfg, Path(HydraConfig.get().runtime.output_dir))
    except CacheWriteError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    from negate.entry import run

    run("pretrain", sys.argv[1:], main)
