"""Deterministic train/val/test split, stratified by label, optionally keeping each group (source) in one split.

With ``group_by`` the test and validation sources are unseen in training, which is what generalisation means here:
random splits of a mixed dataset mostly measure how well sources can be told apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

SPLITS = ("train", "val", "test")


def _hold_out(y: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with about ``fraction`` held out."""
    idx = np.arange(len(y))
    if fraction <= 0:
        return idx, idx[:0]
    if groups is None:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, held = next(splitter.split(idx, y))
        return keep, held
    n_groups = len(np.unique(groups))
    n_splits = int(min(n_groups, max(2, round(1 / fraction))))
    if n_splits < 2:
        raise ValueError(f"split.group_by needs at least 2 groups, found {n_groups}")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    # the fold with both classes closest to the wanted size: a held-out split without one class is useless
    best = None
    for keep, held in splitter.split(idx, y, groups):
        if len(np.unique(y[held])) < 2 and len(np.unique(y)) == 2:
            continue
        score = abs(len(held) - fraction * len(y))
        if best is None or score < best[0]:
            best = (score, keep, held)
    if best is None:
        return _greedy_group_hold_out(y, groups, fraction, seed)
    return best[1], best[2]


def _greedy_group_hold_out(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """When every fold is single-class (few, single-class groups), hold out whole groups taken in turn from the
    real-majority and the synthetic-majority groups until the held-out part has both classes and its share."""
    rng = np.random.default_rng(seed)
    names = np.unique(groups)
    rng.shuffle(names)
    majority = {g: int(y[groups == g].mean() >= 0.5) for g in names}
    queues = [[g for g in names if majority[g] == c] for c in (0, 1)]
    if not all(queues) or len(names) < 3:
        raise ValueError("a grouped split needs groups of both classes and at least 3 groups; "
                         "add sources or use split.group_by=null")
    held: list = []
    turn = 0
    while queues[0] or queues[1]:
        queue = queues[turn % 2] or queues[(turn + 1) % 2]
        held.append(queue.pop())
        turn += 1
        mask = np.isin(groups, held)
        if len(np.unique(y[mask])) == 2 and mask.mean() >= fraction or len(held) >= len(names) - 1:
            break
    mask = np.isin(groups, held)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def split_indices(
    labels: Sequence[int],
    groups: Sequence[str] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Return sorted index arrays for ``train``, ``val`` and ``test``."""
    y = np.asarray(labels, dtype=int)
    g = None if groups is None else np.asarray(groups, dtype=object)
    rest, test = _hold_out(y, g, test_fraction, seed)
    inner_val = val_fraction / max(1e-9, 1 - test_fraction)
    train_local, val_local = _hold_out(y[rest], None if g is None else g[rest], inner_val, seed + 1)
    return {"train": np.sort(rest[train_local]), "val": np.sort(rest[val_local]), "test": np.sort(test)}
