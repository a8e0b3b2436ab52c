"""Training-free WaRPAD on the dev set: AUROC overall, per format and per source.

    python scripts/zero_shot_dev.py                                  # native 256-px patches, 4 per image (grid)
    python scripts/zero_shot_dev.py --protocol paper --grid 4        # whole image resized to 4P, 4x4 tiles of P

The fake score is ``-warpad.score`` (higher similarity = real). Uses one CPU thread by default (shared machine).
Per-image scores go to ``--out`` (CSV) for later analysis.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from negate.data.decode import decode_image
from negate.data.patches import extract_patches
from negate.features.warpad import STATS, WaRPADFamily


def load_manifest(root: Path) -> list[dict]:
    with open(root / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def to_tensor(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def auroc(labels: list[int], scores: list[float]) -> float:
    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/dev"))
    ap.add_argument("--encoder", default="effnet_lite0")
    ap.add_argument("--protocol", choices=("native", "paper"), default="native")
    ap.add_argument("--patch-size", type=int, default=256)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--grid", type=int, default=None, help="tiles per side (default: 1 native, 4 paper)")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--levels", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only the first N manifest rows (0 = all)")
    ap.add_argument("--every", type=int, default=1, help="only every k-th manifest row (a deterministic subsample)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("outputs/zero_shot_dev.csv"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    grid = args.grid or (4 if args.protocol == "paper" else 1)
    fam = WaRPADFamily(args.encoder, alpha=args.alpha, levels=args.levels, grid=grid, device="cpu", batch_size=32)
    rows = load_manifest(args.data)[:: max(1, args.every)]
    if args.limit:
        rows = rows[: args.limit]

    results = []
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        try:
            img = to_tensor(decode_image(args.data / row["path"]))
        except Exception as err:  # report and skip unreadable files
            print(f"skip {row['path']}: {err}", file=sys.stderr)
            continue
        x = extract_patches(img, size=args.patch_size, count=args.count) if args.protocol == "native" else img[None]
        with torch.no_grad():
            feats = fam(x).mean(0)  # pool per image: mean over patches (the engine's "<name>.mean")
        results.append({**{k: row[k] for k in ("path", "label", "format")}, "source": row["path"].split("/")[0],
                        **{s: float(v) for s, v in zip(STATS, feats)}})
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(rows)} images, {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    elapsed = time.perf_counter() - t0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)

    y = [int(r["label"] == "fake") for r in results]
    print(f"encoder={args.encoder} protocol={args.protocol} grid={grid} alpha={args.alpha} levels={args.levels} "
          f"images={len(results)} time={elapsed:.0f}s ({len(results) / elapsed:.2f} img/s)")
    for stat, sign in (("score", -1), ("sim_min", -1), ("rel_l2_mean", 1)):
        print(f"AUROC fake-vs-real by {'-' if sign < 0 else '+'}warpad.{stat}: "
              f"{auroc(y, [sign * r[stat] for r in results]):.3f}")
    for key in ("format", "source"):
        groups = defaultdict(list)
        for r, lab in zip(results, y):
            groups[r[key]].append((lab, -r["score"]))
        print(f"\nper {key} (AUROC of -warpad.score; n_fake/n_real):")
        for name, items in sorted(groups.items()):
            labs = [a for a, _ in items]
            print(f"  {name:40s} {auroc(labs, [b for _, b in items]):6.3f}  {sum(labs)}/{len(labs) - sum(labs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
