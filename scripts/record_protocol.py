"""Record a protocol run (``negate evaluate protocol=cv ...``: leave-one-source-out, ``cv.group_by=family``, or
``protocol=sources``) in negate/protocol_results.json, so that
``train`` can quote the measured protocol numbers in the model card of every model trained with the same recipe.

    python scripts/record_protocol.py outputs/multirun/evaluate/<date>/<n>   # or a single run folder
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from omegaconf import OmegaConf

from negate.pipeline import protocol_signature, register_resolvers
from negate.protocol.families import describe_results, interval_fields

RESULTS = Path(__file__).resolve().parent.parent / "negate" / "protocol_results.json"


def record_families(run_dir: Path, cfg, overrides) -> tuple[str, dict]:
    """A fold-refitting run: ``cv.group_by=family`` is stored under ``<signature>:families``, ``protocol=sources``
    (source-grouped folds over all eras) under ``<signature>:sources``."""
    full = json.loads((run_dir / "families" / "metrics.json").read_text())
    r, b = full["recipe"], full.get("content_baseline", {})
    proto = full["protocol"]
    entry = {
        "protocol": describe_results(full),
        "data": Path(cfg.data.path).parent.name + "/" + Path(cfg.data.path).name,
        "auroc": r["overall"]["auroc"], "auroc_jpeg75": r.get("auroc_jpeg75"),
        "auroc_downscale0.5": r.get("auroc_downscale0.5"), "tpr_at_5fpr": r["overall"].get("tpr_at_5fpr"),
        "auroc_photo": r["auroc_photo_content"], "camera_fpr": r["camera_fpr"],
        "content_baseline_auroc": b.get("overall", {}).get("auroc"),
        "camera_fpr_jpeg75": r.get("at_fold_thresholds_jpeg75", {}).get("camera_fpr"),
        "camera_fpr_downscale0.5": r.get("at_fold_thresholds_downscale0.5", {}).get("camera_fpr"),
        "recon_pairs_auroc": r.get("recon_pairs", {}).get("auroc"), "pairs_auroc": r.get("pairs", {}).get("auroc_fold_ensemble"),
        "date": date.today().isoformat(),
        "command": "negate evaluate " + " ".join(o for o in overrides if not o.startswith(("data.path=", "cv.pairs=",
                                                                                             "paths."))),
    }
    entry.update(interval_fields(full))  # runs since the protocol drew them
    if r.get("by_fake_format"):  # runs since the protocol reported it
        entry["fakes_by_format"] = {f: {"n": v["n"], "auroc": v["auroc"], "detected": v["detected"]}
                                    for f, v in r["by_fake_format"].items()}
    suffix = ":families" if proto["group_by"] == "family" else f":{proto['group_by']}s"
    return protocol_signature(cfg) + suffix, entry


def record(run_dir: Path) -> tuple[str, dict]:
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    overrides = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
    if (run_dir / "families" / "metrics.json").is_file():
        return record_families(run_dir, cfg, overrides)
    metrics = json.loads((run_dir / "metrics.json").read_text())["loso"]
    by_format = metrics.get("auroc_by_format", {})
    entry = {
        "protocol": f"leave-one-{cfg.cv.group_by}-out, pooled",
        "data": Path(cfg.data.path).parent.name + "/" + Path(cfg.data.path).name,
        "auroc": metrics["overall"]["auroc"],
        "auroc_jpeg75": metrics["jpeg75"]["auroc"],
        "camera_fpr": metrics["camera_fpr_at_fold_thresholds"],
        "fpr": metrics["fpr_at_fold_thresholds"],
        "auroc_jpeg": by_format.get("JPEG", float("nan")),
        "auroc_png": by_format.get("PNG", float("nan")),
        "date": date.today().isoformat(),
        "command": "negate evaluate " + " ".join(o for o in overrides if not o.startswith("data.path=")),
    }
    return protocol_signature(cfg), entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    register_resolvers()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for run in args.runs:
        signature, entry = record(run)
        results[signature] = entry
        print(f"{signature}: AUROC {entry['auroc']:.3f}, q75 {entry['auroc_jpeg75']:.3f}  <- {run}")
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
