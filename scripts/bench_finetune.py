"""Throughput of the learned detector: training steps (patches/s) and inference (images/s over the patch grid).

    python scripts/bench_finetune.py [--encoder effnet_lite0] [--patch 128] [--batch 32] [--grid 16] [--steps 10]

Runs on CUDA when present (bf16 autocast, channels-last), else on the CPU with the threads torch chooses. Synthetic
random inputs: this measures the network, not decoding (see scripts/bench_features.py for decode speed).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from negate.finetune.module import PatchDetector, balanced_bce


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="effnet_lite0")
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--grid", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--pretrained", action="store_true", help="load pretrained weights (same speed, slower start)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    model = PatchDetector(encoder=args.encoder, pretrained=args.pretrained).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch, 3, args.patch, args.patch, device=device)
    y = (torch.arange(args.batch, device=device) % 2).float()
    model.train()
    for step in range(args.steps + 2):  # two warm-up steps
        if step == 2:
            _sync(device)
            start = time.perf_counter()
        with amp:
            loss = balanced_bce(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    train_rate = args.steps * args.batch / (time.perf_counter() - start)
    model.eval()
    images = max(1, 64 // args.grid)
    xi = torch.rand(images * args.grid, 3, args.patch, args.patch, device=device)
    with torch.no_grad(), amp:
        model(xi)
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            model(xi).view(images, args.grid).mean(1)
        _sync(device)
    infer_rate = args.steps * images / (time.perf_counter() - start)
    print(json.dumps({"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
                      "encoder": args.encoder, "patch": args.patch, "batch": args.batch,
                      "train_patches_per_s": round(train_rate, 1), "grid": args.grid,
                      "infer_images_per_s": round(infer_rate, 1)}))


if __name__ == "__main__":
    main()
