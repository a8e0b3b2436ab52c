"""Add a named operating point to a finished model folder, chosen on that model's own validation split.

`negate train` stores the operating points of ``threshold.operating_points`` in every new model folder. A folder
written before they existed (the shipped model among them) holds only its default threshold, but its
``training_images.sha256`` says which images were its validation split. Given the data it was trained on, this
script scores those images with the model as ``negate infer`` does, checks that it reproduces the validation AUROC
of the folder's ``metrics.json`` (so the split is the one the model was fitted beside), and stores the lowest
threshold whose FPR on the validation reals is at most ``--target-fpr`` as operating point ``--name``.

    python scripts/add_operating_point.py negate/shipped_model ../shared/data/dev/MANIFEST.tsv --name balanced \\
        --target-fpr 0.05 --note "family protocol: ..."
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from sklearn.metrics import roc_auc_score

from negate.data.index import hash_records
from negate.data.records import load_manifest
from negate.model_folder import METRICS_JSON, read_training_images
from negate.operating_points import add_operating_point, point_entry, rule_text
from negate.paths import CONFIG_DIR
from negate.protocol.thresholds import choose_threshold, uncertain_band


def validation_scores(folder: Path, manifest: Path, cache_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of the model's validation images found in ``manifest``."""
    from negate.infer import predict

    split = read_training_images(folder)
    if split is None:
        raise SystemExit(f"{folder} has no training_images.sha256: its validation split is unknown")
    records = load_manifest(manifest)
    hashes, _ = hash_records(records)
    val = [r for r, h in zip(records, hashes) if h and split.get(h) == "val"]
    wanted = sum(s == "val" for s in split.values())
    if len(val) != wanted:
        raise SystemExit(f"{manifest} holds {len(val)} of the {wanted} validation images of {folder}: give the data "
                         "the model was trained on")
    overrides = [f"ckpt={folder.resolve()}", "provenance=off"] + ([f"paths.cache_dir={cache_dir}"] if cache_dir else [])
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="infer", overrides=overrides)
    rows, _ = predict(cfg, [r.path for r in val])
    prob = {row["path"]: row["prob_synthetic"] for row in rows}
    if any(prob.get(r.path) is None for r in val):
        raise SystemExit("some validation images could not be scored: " +
                         ", ".join(r.path for r in val if prob.get(r.path) is None)[:500])
    return np.array([r.label for r in val]), np.array([prob[r.path] for r in val], dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model folder (written by negate train)")
    parser.add_argument("manifest", type=Path, help="the manifest the model was trained on (path, label, ...)")
    parser.add_argument("--name", default="balanced", help="operating point name (default: balanced)")
    parser.add_argument("--target-fpr", type=float, default=0.05, help="FPR bound on the validation reals")
    parser.add_argument("--uncertain-margin", type=float, default=0.1, help="half-width of the uncertain band at 0.5")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default: negate infer's)")
    parser.add_argument("--note", default="", help="what was measured of this point elsewhere, for the model card")
    args = parser.parse_args()

    y, p = validation_scores(args.model, args.manifest, args.cache_dir)
    recorded = json.loads((args.model / METRICS_JSON).read_text()).get("val", {})
    auroc = float(roc_auc_score(y, p))
    if "auroc" in recorded and (abs(auroc - recorded["auroc"]) > 1e-4 or len(y) != recorded.get("n", len(y))):
        raise SystemExit(f"the validation images score AUROC {auroc:.6f} on {len(y)} images, {METRICS_JSON} recorded "
                         f"{recorded['auroc']:.6f} on {recorded.get('n')}: not the data or code the model was fitted "
                         "with; nothing written")
    threshold = choose_threshold(y, p, "fpr", args.target_fpr)
    entry = point_entry(threshold, uncertain_band(threshold, args.uncertain_margin),
                        rule_text("fpr", args.target_fpr, []), y, p)
    if args.note:
        entry["note"] = args.note
    add_operating_point(args.model, args.name, entry)
    print(f"{args.model}: operating point {args.name!r} at threshold {threshold:.4f} (validation AUROC {auroc:.4f}, "
          f"as recorded; FPR {entry['val_fpr']:.3f}, TPR {entry['val_tpr']:.3f} on {len(y)} images)", file=sys.stderr)


if __name__ == "__main__":
    main()
