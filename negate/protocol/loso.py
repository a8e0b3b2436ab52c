"""Leave-one-group-out cross-validation: every prediction comes from a model that never saw that image's group.

Grouping by ``source`` (or ``generator``) is the protocol that tells whether a feature set generalises; random folds
of a mixed dataset mostly measure how well sources can be told apart. Inside each fold an inner, grouped validation
split is used for early stopping and for the fold's threshold, so the held-out group touches nothing but scoring.
Predictions are pooled over folds into one set of metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from negate.featureset import FeatureSet, augmented_rows, make_detector
from negate.protocol import camera_rows, write_split_report
from negate.protocol.split import split_indices
from negate.protocol.thresholds import choose_threshold

log = logging.getLogger(__name__)


def leave_one_group_out(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    make_detector: Callable[[], object],
    threshold_cfg: dict,
    eval_views: dict[str, np.ndarray] | None = None,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> dict:
    """Pooled out-of-group probabilities.

    ``eval_views`` maps a name (e.g. "jpeg75") to features of the same rows under a perturbation; each fold's model
    scores the held-out rows of every view too. ``extra = (X_extra, owner_row, y_extra)`` are augmented training rows
    owned by a row of ``X``: they train a fold only when their owner is in that fold's inner training part.
    Returns ``{"prob": (n,), "threshold": (n,) fold threshold per row, "views": {name: (n,)}, "folds": [...]}``.
    """
    groups = np.asarray(groups, dtype=object)
    n = len(y)
    prob = np.full(n, np.nan)
    row_threshold = np.full(n, np.nan)
    view_prob = {name: np.full(n, np.nan) for name in (eval_views or {})}
    folds = []
    for group in sorted(set(groups.tolist()), key=str):
        held = np.flatnonzero(groups == group)
        rest = np.flatnonzero(groups != group)
        if len(np.unique(y[rest])) < 2:
            continue
        inner = split_indices(y[rest], groups[rest], val_fraction=val_fraction, test_fraction=0.0, seed=seed)
        tr, va = rest[inner["train"]], rest[inner["val"]]
        X_tr, y_tr = X[tr], y[tr]
        if extra is not None:
            X_extra, owner, y_extra = extra
            use = np.isin(owner, tr)
            X_tr, y_tr = np.concatenate([X_tr, X_extra[use]]), np.concatenate([y_tr, y_extra[use]])
        detector = make_detector()
        detector.fit(X_tr, y_tr, X[va], y[va])
        p_val = detector.predict_proba(X[va])[:, 1]
        t = choose_threshold(y[va], p_val, threshold_cfg.get("method", "fpr"), threshold_cfg.get("target_fpr", 0.05))
        prob[held] = detector.predict_proba(X[held])[:, 1]
        row_threshold[held] = t
        for name, Xv in (eval_views or {}).items():
            view_prob[name][held] = detector.predict_proba(Xv[held])[:, 1]
        folds.append({"group": str(group), "n": int(len(held)), "n_fake": int(y[held].sum()), "threshold": float(t)})
    return {"prob": prob, "threshold": row_threshold, "views": view_prob, "folds": folds}


def loso(cfg: DictConfig, runner, fs: FeatureSet, run_dir: Path, group_by: str = "source") -> dict:
    """Leave-one-group-out over the whole dataset, also scored after JPEG q75; writes ``loso/report.md``."""
    from negate.data.format_match import format_match_share

    if cfg.get("aligned") or format_match_share(cfg) > 0.0:
        log.warning("pooled leave-one-%s-out extracts features once: aligned reconstructions and format_match are "
                    "left out of its training rows (protocol=sources refits them per fold)", group_by)
    groups = np.array([getattr(r, group_by) for r in fs.records], dtype=object)
    kept, q75 = runner.features(fs.records, "jpeg:75")
    if len(kept) != len(fs.records):
        raise RuntimeError("some images failed under jpeg:75 but not as originals")
    extra = augmented_rows(cfg, runner, fs, np.arange(len(fs.records)))
    thr = OmegaConf.to_container(cfg.threshold, resolve=True)
    result = leave_one_group_out(
        fs.X, fs.y, groups, lambda: make_detector(cfg.classifier, fs.names), thr, eval_views={"jpeg75": q75.X},
        extra=extra, val_fraction=cfg.split.val_fraction, seed=cfg.seed,
    )
    scored = ~np.isnan(result["prob"])
    y, p, t = fs.y[scored], result["prob"][scored], result["threshold"][scored]
    records = [fs.records[i] for i in np.flatnonzero(scored)]
    is_camera = camera_rows(cfg, records)
    flagged = p >= t  # each row against its own fold's threshold
    extra_info = {
        "protocol": f"leave-one-{group_by}-out, pooled; per-fold threshold from an inner grouped validation split",
        "folds": result["folds"],
        "fpr_at_fold_thresholds": float(flagged[y == 0].mean()) if (y == 0).any() else float("nan"),
        "tpr_at_fold_thresholds": float(flagged[y == 1].mean()) if (y == 1).any() else float("nan"),
        "camera_fpr_at_fold_thresholds": float(flagged[is_camera & (y == 0)].mean()) if (is_camera & (y == 0)).any() else float("nan"),
        "camera_pattern": cfg.eval.camera_pattern,
        "camera_n": int((is_camera & (y == 0)).sum()),
    }
    robustness = {"jpeg75": (y, result["views"]["jpeg75"][scored])}
    metrics = write_split_report(cfg, run_dir / "loso", records, y, p, float(np.median(t)),
                                 f"Leave-one-{group_by}-out (pooled; threshold = median of the fold thresholds)",
                                 robustness=robustness, extra=extra_info)
    # the report scores every row at one threshold, the median of the fold thresholds (each chosen without the
    # row's group); the rates at each row's own fold threshold are kept beside it
    overall = {**metrics["overall"], "camera_fpr": metrics.get("camera_fpr", {}).get("fpr", float("nan"))}
    by_format = {r["format"]: r["auroc"] for r in metrics.get("per_format", [])}
    return {"overall": overall, "jpeg75": metrics["robustness"]["jpeg75"], "auroc_by_format": by_format,
            **{k: extra_info[k] for k in ("fpr_at_fold_thresholds", "tpr_at_fold_thresholds",
                                          "camera_fpr_at_fold_thresholds")}}
