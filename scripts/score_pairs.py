"""Score content-matched pairs (an AI edit beside its own input photo) with one model folder, as ``negate infer``
scores them: pooled AUROC over the images, and the per-pair reading the pairs are built for (the share of pairs
whose AI edit scores above its input), per ``edit`` of the manifest and for edits that change less / at least half
of the image. The same reading as the family protocol's report (``negate.protocol.families.pairs_won``), but for a
finished model rather than fold models: the shipped model never trained on the pairs, so its figures are held out.

    python scripts/score_pairs.py ../shared/data/pairs/MANIFEST.tsv                       # the shipped model
    python scripts/score_pairs.py ../shared/data/pairs/MANIFEST.tsv -m negate/shipped_model/member_default
    python scripts/score_pairs.py ../shared/data/pairs/MANIFEST.tsv --operating-point balanced

It also counts the verdicts at the model's operating point (``--operating-point``, default: the model's own).
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from negate.data.records import load_manifest
from negate.protocol.families import pairs_won


def infer_rows(paths: list[str], model: str, operating_point: str = "default") -> dict[str, tuple[float, str]]:
    """``negate infer`` on ``paths`` (CSV on stdout): path -> (probability, verdict), for the images it could score."""
    cmd = [sys.executable, "-m", "negate.cli", "infer", *paths, "output=csv", "quiet=true", "provenance=off",
           f"operating_point={operating_point}", "-m", model]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"negate infer failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return {str(Path(r["path"]).resolve()): (float(r["prob_synthetic"]), r["verdict"])
            for r in csv.DictReader(io.StringIO(done.stdout)) if r["prob_synthetic"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, help="pairs manifest: path, label, pair[, edit, changed_fraction]")
    parser.add_argument("-m", "--model", default="shipped", help="model folder, registered name, latest or shipped")
    parser.add_argument("--operating-point", default="default", help="the model's operating point for the verdicts")
    args = parser.parse_args()
    records = load_manifest(args.manifest, source_from="column")
    scored = infer_rows([r.path for r in records], args.model, args.operating_point)
    found = [scored.get(str(Path(r.path).resolve()), (np.nan, "error")) for r in records]
    prob = np.array([p for p, _ in found])
    ok = ~np.isnan(prob)
    y = np.array([r.label for r in records])
    won = pairs_won(records, prob)
    print(f"{args.model}: {ok.sum()} of {len(records)} images scored; AUROC {roc_auc_score(y[ok], prob[ok]):.3f}; "
          f"AI edit above its input in {won['fake_above_real']:.1%} of pairs")
    for label, name in ((1, "AI edits"), (0, "input photos")):
        verdicts = Counter(v for (_, v), r in zip(found, records) if r.label == label)
        counts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
        print(f"operating point {args.operating_point}, {name}: {counts}")
    print(f"{'edit':<18} {'pairs':>5} {'changed':>7} {'fake>real':>9}")
    for group in ("by_edit", "by_change"):
        for name, v in won[group].items():
            print(f"{name:<18} {v['pairs']:>5} {v['changed_fraction']:>7.2f} {v['fake_above_real']:>9.2f}")


if __name__ == "__main__":
    main()
