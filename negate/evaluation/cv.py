"""Leave-one-group-out cross-validation: every prediction comes from a model that never saw that image's group.

Grouping by ``source`` (or ``generator``) is the protocol that tells whether a feature set generalises; random folds
of a mixed dataset mostly measure how well sources can be told apart. Inside each fold an inner, grouped validation
split is used for early stopping and for the fold's threshold, so the held-out group touches nothing but scoring.
Predictions are pooled over folds into one set of metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from negate.data.split import split_indices
from negate.thresholds import choose_threshold


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
