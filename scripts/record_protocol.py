"""Record a leave-one-source-out run (``negate evaluate protocol=cv ...``) in negate/protocol_results.json, so that
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

RESULTS = Path(__file__).resolve().parent.parent / "negate" / "protocol_results.json"


def record(run_dir: Path) -> tuple[str, dict]:
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    overrides = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
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
