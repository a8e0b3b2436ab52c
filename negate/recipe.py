"""A *recipe* fitted on given training and validation records: what train and every protocol fold share.

``fit_recipe(cfg, train, val, work_dir)`` runs the composed recipe end to end:

0. with ``ensemble.members``: fit each named recipe and average their logits (:mod:`negate.ensemble`);
1. with ``finetune.name != none``: fine-tune the backbone on ``train`` (early stopping on ``val``) and make the
   fitted network the pipeline's encoder (``encoder.name=finetuned``, patch logits over a fixed grid);
2. features of ``train``/``val`` through the pipeline (cached), the classifier fitted on ``train`` (``val`` for its
   early stopping / calibration), the threshold chosen on ``val``.

``base_view`` is a view applied to every image before anything else (``lowpass:64`` makes the content-only
baseline). The result scores any records under any view: :meth:`FittedRecipe.score`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from negate.data.records import ImageRecord
from negate.pipeline import FeatureRunner, compose_view, pipeline_from_cfg
from negate.protocol import fit_threshold

log = logging.getLogger(__name__)


def finetune_enabled(cfg: DictConfig) -> bool:
    ft = cfg.get("finetune")
    return bool(ft) and ft.get("name", "none") not in (None, "none")


def finetuned_pipeline(cfg: DictConfig, weights: str | Path) -> dict:
    """The pipeline of a fine-tuned recipe: the fitted network as encoder over a fixed grid of native patches."""
    from negate.finetune.fit import finetuned_encoder_cfg

    ft = cfg.finetune
    pipeline = pipeline_from_cfg(cfg)
    pipeline["encoder"] = finetuned_encoder_cfg(weights, pool=ft.get("pool", "logit"),
                                                batch_size=int(ft.get("infer_batch_size", 64)))
    pipeline["patches"] = {"size": int(ft.patch), "count": int(ft.get("grid", 16)), "selection": "grid",
                           "policy": "native"}
    return pipeline


def aligned_training_records(cfg: DictConfig, train: list[ImageRecord]) -> list[ImageRecord]:
    """``aligned`` (feature recipes): each training real's aligned reconstruction as an extra fake, beside the real's
    same region saved the same way as an extra real, so the pair differs only by the decoder's trace."""
    if not cfg.get("aligned"):
        return []
    from negate.finetune.fit import build_aligned

    crops = build_aligned([r for r in train if r.label == 0], OmegaConf.to_container(cfg.aligned, resolve=True),
                          cfg.paths.cache_dir, int(cfg.data.get("max_pixels", 64_000_000)))
    by_path = {r.path: r for r in train}
    extra = []
    for path, items in crops.items():
        source = by_path[path].source
        for c in items:
            extra += [ImageRecord(c.real_crop, 0, "real (aligned crop)", source),
                      ImageRecord(c.path, 1, "aligned reconstruction", source)]
    return extra


@dataclass
class FittedRecipe:
    runner: FeatureRunner  # or an EnsembleRunner
    detector: object
    threshold: float
    pipeline: dict
    base_view: str = ""

    def score(self, records: list[ImageRecord], view: str = "") -> tuple[list[int], np.ndarray]:
        """Indices of the scored records and their probability of being synthetic."""
        if not records:
            return [], np.zeros(0)
        kept, table = self.runner.features(records, compose_view(view, self.base_view))
        prob = self.detector.predict_proba(table.X)[:, 1] if kept else np.zeros(0)
        return kept, prob


def _labels(records: list[ImageRecord], kept: list[int]) -> np.ndarray:
    return np.array([records[i].label for i in kept], dtype=int)


def threshold_view_scores(cfg: DictConfig, recipe: "FittedRecipe", val: list[ImageRecord],
                          views: list[str] | None = None) -> dict:
    """``{view: (labels, probabilities)}`` of the validation records seen through each of ``views`` (default:
    ``threshold.views``)."""
    from negate.protocol import threshold_views

    scored = {view: recipe.score(val, view) for view in (threshold_views(cfg) if views is None else views)}
    return {view: (_labels(val, kept), prob) for view, (kept, prob) in scored.items() if kept}


def format_matched_training(cfg: DictConfig, train: list[ImageRecord]) -> list[ImageRecord]:
    """``format_match.share``: the training fakes re-saved like training reals (:mod:`negate.data.format_match`)."""
    from negate.data.format_match import format_match_share, format_matched

    share = format_match_share(cfg)
    if share <= 0.0:
        return train
    return format_matched(train, share, cfg.paths.cache_dir, seed=int(cfg.seed),
                          max_pixels=int(cfg.data.get("max_pixels", 64_000_000)))


def training_data_note(cfg: DictConfig) -> str:
    """What the model card says of the training rows beyond the images' licences."""
    from negate.data.format_match import format_match_share

    share = format_match_share(cfg)
    return (f" Each training fake was re-saved with the JPEG tables of a training real with probability {share:g} "
            "(format_match)." if share > 0.0 else "")


def training_rows(cfg: DictConfig, runner: FeatureRunner, train: list[ImageRecord],
                  base_view: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The classifier's training rows: the features of ``train`` (already format-matched), of the aligned
    reconstructions of its reals and of its ``augment`` views, with their labels."""
    from negate.featureset import augmented_views  # late: featureset imports the pipeline

    augmented = augmented_views(cfg, runner, train, base_view)
    if augmented is not None:
        augmented = augmented[0], _labels(train, augmented[1])
    train = train + aligned_training_records(cfg, train)
    kept, table = runner.features(train, base_view)
    X_tr, y_tr = table.X, _labels(train, kept)
    if augmented is not None:
        X_tr, y_tr = np.concatenate([X_tr, augmented[0]]), np.concatenate([y_tr, augmented[1]])
    return X_tr, y_tr


def fit_recipe(cfg: DictConfig, train: list[ImageRecord], val: list[ImageRecord], work_dir: str | Path,
               base_view: str = "") -> FittedRecipe:
    from negate.featureset import make_detector  # late: featureset imports the pipeline

    if cfg.get("ensemble"):
        from negate.ensemble import fit_ensemble

        return fit_ensemble(cfg, train, val, work_dir, base_view)
    train = format_matched_training(cfg, train)
    if finetune_enabled(cfg):
        from negate.finetune.fit import fit_detector

        weights = fit_detector(train, val, cfg.finetune, Path(work_dir) / "finetune", cache_dir=cfg.paths.cache_dir,
                               max_pixels=int(cfg.data.get("max_pixels", 64_000_000)), seed=int(cfg.seed))
        pipeline = finetuned_pipeline(cfg, weights)
    else:
        pipeline = pipeline_from_cfg(cfg)
    runner = FeatureRunner(pipeline, cfg)
    pipeline["family_versions"] = {f.name: str(f.version) for f in runner.families}
    recipe = FittedRecipe(runner, None, 0.5, pipeline, base_view)
    detector = make_detector(cfg.classifier, runner.names)
    va_kept, va_table = runner.features(val, base_view)
    y_va = _labels(val, va_kept)
    if getattr(detector, "params", lambda: {})().get("calibrate_on") == "val":
        X_tr, y_tr = va_table.X, y_va  # only a calibration on held-out scores: training rows are not needed
    else:
        X_tr, y_tr = training_rows(cfg, runner, train, base_view)
    if len(set(y_tr.tolist())) < 2:
        raise ValueError("the training records hold one class only")
    detector.fit(X_tr, y_tr, va_table.X, y_va)
    p_val = detector.predict_proba(va_table.X)[:, 1]
    recipe.detector = detector
    recipe.threshold, _ = fit_threshold(cfg, y_va, p_val, threshold_view_scores(cfg, recipe, val))
    return recipe


def content_baseline_cfg(cfg: DictConfig) -> DictConfig:
    """The content-only baseline of the ``cv.content_baseline`` block: images reduced to ~64 px and back
    (``lowpass:64``), whole image through the frozen encoder, logistic regression; no fine-tuning."""
    base = OmegaConf.to_container(cfg, resolve=True)
    spec = base["cv"]["content_baseline"]
    base["finetune"] = {"name": "none"}
    base["aligned"] = None
    base["augment"] = {"kind": "none"}
    base["format_match"] = {"share": 0.0}  # the same baseline whatever the recipe's training rows
    base.pop("ensemble", None)  # the baseline is one frozen encoder + logreg, whatever the recipe
    base["feature"] = {}
    base["ae"] = {"name": "none"}
    base["encoder"] = OmegaConf.to_container(OmegaConf.load(_config_file("encoder", spec["encoder"])), resolve=True)
    base["encoder"]["families"] = {"embedding": {}}
    base["encoder"]["pool"] = "mean"
    base["encoder"].pop("embed_dim", None)  # documents pool=stages
    base["patches"] = {**base["patches"], "policy": "resize", "count": 1, "selection": "center"}
    base["classifier"] = spec["classifier"]
    base["data"]["reencode"] = None
    return OmegaConf.create(base)


def _config_file(group: str, name: str) -> Path:
    from negate.paths import CONFIG_DIR

    path = Path(CONFIG_DIR) / group / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no {group} config named {name!r} ({path})")
    return path
