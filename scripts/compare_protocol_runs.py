"""Is one recipe really better than another under the family protocol? Two runs of ``negate evaluate protocol=cv
cv.group_by=family`` on the same manifest hold out the same folds, so their out-of-fold scores can be compared on
the same draws: whole fake families and real sources are redrawn (``cluster_bootstrap_auroc``), and the AUROC
difference gets a 95% interval and the share of draws where the first run is not ahead.

    python scripts/compare_protocol_runs.py outputs/runs/evaluate/<run A> outputs/runs/evaluate/<run B> [--n-boot 2000]

Prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from negate.data.records import load_manifest
from negate.evaluation.metrics import cluster_bootstrap_auroc
from negate.protocol.families import interval_clusters


def read_predictions(run_dir: Path) -> dict[str, dict]:
    """path -> the row of ``families/predictions.csv``."""
    with open(run_dir / "families" / "predictions.csv", newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


def sources_of(run_dir: Path, rows: dict[str, dict]) -> dict[str, str]:
    """path -> source: a column of the predictions since it was added, else from the manifest the run read."""
    if all(row.get("source") for row in rows.values()):
        return {p: row["source"] for p, row in rows.items()}
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    return {r.path: r.source for r in load_manifest(cfg.data.path)}


def compare(run_a: Path, run_b: Path, n_boot: int = 2000, seed: int = 0) -> dict:
    folds = [json.loads(m.read_text())["protocol"]["folds"] if m.is_file() else None
             for m in (run_a / "families" / "metrics.json", run_b / "families" / "metrics.json")]
    if None not in folds and [f["families"] for f in folds[0]] != [f["families"] for f in folds[1]]:
        raise SystemExit("the runs held out different folds: pairing their scores would compare different tests")
    a, b = read_predictions(run_a), read_predictions(run_b)
    if set(a) != set(b):
        raise SystemExit(f"the runs scored different images ({len(set(a) ^ set(b))} differ): compare runs on one manifest")
    paths = sorted(a)
    y = np.array([int(a[p]["label"]) for p in paths])
    source = sources_of(run_a, a)
    groups = interval_clusters(y, [a[p]["family"] for p in paths], [source.get(p, p) for p in paths])

    def column(rows, name):
        return np.array([float(rows[p][name]) for p in paths])

    scores = {"a": column(a, "recipe:original"), "b": column(b, "recipe:original"),
              "content_baseline": column(a, "content_baseline:original")}
    scored = np.isfinite(np.vstack(list(scores.values()))).all(0)
    out = cluster_bootstrap_auroc(y, scores, groups, n_boot=n_boot, seed=seed)
    out["point"] = {n: float(roc_auc_score(y[scored], s[scored])) for n, s in scores.items()}
    out["runs"] = {"a": str(run_a), "b": str(run_b)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(compare(args.run_a, args.run_b, args.n_boot, args.seed), indent=1))


if __name__ == "__main__":
    main()
