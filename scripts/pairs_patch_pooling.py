"""Does localised scoring help on the content-matched edit pairs? Pairs AUROC of a fine-tuned detector's patch logits
pooled by their mean, top-quarter mean and maximum, over a 16- and a 64-patch grid, split by how much of the image
the edit changed (the pairs manifest's ``changed_fraction``).

    python scripts/pairs_patch_pooling.py --weights negate/shipped_model/member_finetuned_no_aligned/detector.safetensors \\
        --pairs ../shared/data/pairs

Score only with weights that never saw the pairs (negate never trains on them).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from negate.data.decode import decode_image, read_file_bytes
from negate.data.patches import extract_patches
from negate.finetune.data import to_tensor
from negate.finetune.fit import finetuned_encoder_cfg
from negate.models.encoders import create_encoder

POOLS = {
    "mean": np.mean,
    "top quarter": lambda z: np.sort(z)[-max(1, len(z) // 4):].mean(),
    "max": np.max,
}


def patch_logits(encoder, path: Path, grid: int) -> np.ndarray:
    img = to_tensor(np.asarray(decode_image(read_file_bytes(str(path)))))
    patches = extract_patches(img, encoder.input_size[0], grid, "grid")
    with torch.inference_mode():
        return encoder(patches).squeeze(1).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True, help="a fine-tuned detector.safetensors")
    ap.add_argument("--pairs", type=Path, required=True, help="folder with the pairs MANIFEST.tsv")
    ap.add_argument("--grids", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--small", type=float, default=0.5, help="a pair is a local edit below this changed fraction")
    args = ap.parse_args(argv)
    encoder = create_encoder(finetuned_encoder_cfg(args.weights)).eval()
    with open(args.pairs / "MANIFEST.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    y = np.array([r["label"] == "fake" for r in rows])
    changed = {r["pair"]: float(r["changed_fraction"] or 1) for r in rows if r["label"] == "fake"}
    local = np.array([changed.get(r["pair"], 1.0) < args.small for r in rows])
    print(f"{len(rows)} images, {int(local.sum()) // 2} local-edit pairs (changed < {args.small})")
    print("| grid | pool | all pairs | local edits | the others |\n|---|---|---|---|---|")
    for grid in args.grids:
        logits = [patch_logits(encoder, args.pairs / r["path"], grid) for r in rows]
        for name, pool in POOLS.items():
            s = np.array([pool(z) for z in logits])
            print(f"| {grid} | {name} | {roc_auc_score(y, s):.3f} | {roc_auc_score(y[local], s[local]):.3f} | "
                  f"{roc_auc_score(y[~local], s[~local]):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
