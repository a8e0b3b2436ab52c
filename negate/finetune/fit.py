"""Fine-tune a :class:`~negate.finetune.module.PatchDetector` with Lightning ``Trainer.fit`` and save its weights.

``fit_detector(train, val, cfg.finetune, out_dir)``: decoded images cached in memory, random native patches with
label-independent augmentation, optional aligned reconstructions of the training reals (``finetune.aligned``),
early stopping and best checkpoint on validation AUROC (the validation records come from groups held out of
training), bf16 autocast on GPU, DDP when several devices are given. The result is one safetensors file whose
metadata records the architecture and preprocessing; :func:`finetuned_encoder_cfg` turns it into an ``encoder``
config (``name: finetuned``) that the feature engine runs over a fixed patch grid.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from negate.data.records import ImageRecord
from negate.finetune import fit_relevant
from negate.finetune.data import DecodedImages, PatchAugment, PatchEvalSet, PatchTrainSet, collate_patches
from negate.finetune.module import PatchDetector

log = logging.getLogger(__name__)

WEIGHTS_FILE = "detector.safetensors"
# bump when a change to the fine-tuning code changes what the same data and config produce (invalidates cached weights)
FIT_VERSION = 1


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})


def build_aligned(records: list[ImageRecord], cfg: dict, cache_dir: str | Path, max_pixels: int) -> dict:
    """Aligned reconstructions of the real ``records`` through ``cfg['ae']`` (``taef2`` offline, or a hub VAE of
    the ``ae`` group), cached under ``cache_dir``."""
    from negate.finetune.aligned import aligned_reconstructions

    from negate.models.autoencoders import create_autoencoder

    autoencoder = create_autoencoder({"name": cfg.get("ae", "taef2"), "weights_dir": cfg.get("weights_dir")},
                                     pretrained=bool(cfg.get("pretrained", True)))
    return aligned_reconstructions(records, autoencoder, cache_dir, region=int(cfg.get("region", 256)),
                                   per_real=int(cfg.get("per_real", 1)), max_pixels=max_pixels)


def _trainer_kwargs(cfg: dict) -> dict:
    t = dict(cfg.get("trainer") or {})
    accelerator = t.get("accelerator", "auto")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    precision = t.get("precision") or ("bf16-mixed" if on_gpu else "32-true")
    return {"accelerator": accelerator, "devices": t.get("devices", "auto"), "strategy": t.get("strategy", "auto"),
            "precision": precision}


def loader_workers(value, accelerator: str = "auto") -> int:
    """``finetune.num_workers``: a count, or ``auto``: 1 on the CPU (the training process needs the other cores),
    on a GPU machine the CPU cores per visible GPU less one (at most 8), so that decoding and augmentation keep up."""
    if str(value).lower() != "auto":
        return int(value)
    gpus = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 0
    if gpus == 0:
        return 1
    return max(1, min(8, (os.cpu_count() or 2) // gpus - 1))


def fit_key(train: list[ImageRecord], val: list[ImageRecord], cfg, max_pixels: int, seed: int) -> str | None:
    """What the fitted weights depend on: the training and validation images (content hashes, labels, order), the
    ``finetune`` config, the seed and the code version. None when an image cannot be read (then nothing is cached)."""
    from negate.cache import config_hash
    from negate.data.index import hash_records

    hashes = {}
    for name, records in (("train", train), ("val", val)):
        digests, failed = hash_records(records)
        if failed:
            return None
        hashes[name] = [[d, r.label] for d, r in zip(digests, records)]
    return config_hash({"images": hashes, "finetune": fit_relevant(_plain(cfg)),
                        "max_pixels": int(max_pixels), "seed": int(seed), "version": FIT_VERSION})


def fit_detector(
    train: list[ImageRecord],
    val: list[ImageRecord],
    cfg,
    out_dir: str | Path,
    *,
    cache_dir: str | Path = "outputs/cache",
    max_pixels: int = 64_000_000,
    seed: int = 0,
) -> Path:
    """Fine-tune on ``train`` (early stopping on ``val``) and write ``out_dir/detector.safetensors``.

    The weights are also kept under ``cache_dir/finetune/<fit_key>``: the same images, config and seed (a rerun, a
    killed protocol run started again, an ensemble member fitted on folds already fitted) reuse them."""
    cfg = _plain(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = fit_key(train, val, cfg, max_pixels, seed)
    cached = Path(cache_dir) / "finetune" / key / WEIGHTS_FILE if key else None
    if cached is not None and cached.is_file():
        shutil.copyfile(cached, out_dir / WEIGHTS_FILE)
        log.info("fine-tuned weights for these images and settings found in the cache: %s", cached)
        return out_dir / WEIGHTS_FILE
    soup = int(cfg.get("soup") or 1)
    if soup > 1:
        path = _fit_soup(train, val, cfg, out_dir, cache_dir, max_pixels, seed, soup)
    else:
        path = _fit(train, val, cfg, out_dir, cache_dir, max_pixels, seed)
    if cached is not None and path.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, cached)  # atomic: a killed run leaves the whole file or none
    return path


def _fit(train, val, cfg: dict, out_dir: Path, cache_dir, max_pixels: int, seed: int) -> Path:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from safetensors.torch import save_file

    L.seed_everything(seed, workers=True, verbose=False)
    started = time.perf_counter()
    train_images, val_images = DecodedImages(train, max_pixels), DecodedImages(val, max_pixels)
    if len(set(train_images.labels.tolist())) < 2 or len(set(val_images.labels.tolist())) < 2:
        raise ValueError("fine-tuning needs both classes in the training and the validation records")
    aligned = build_aligned(train, cfg["aligned"], cache_dir, max_pixels) if cfg.get("aligned") else None
    patch = int(cfg.get("patch", 128))
    train_set = PatchTrainSet(train_images, patch, PatchAugment.from_dict(cfg.get("augment")), aligned, seed,
                              patches_per_image=int(cfg.get("patches_per_image", 1)),
                              local=float((cfg.get("aligned") or {}).get("local", 0.0)))
    val_set = PatchEvalSet(val_images, patch, int(cfg.get("val_patches", 4)))
    log.info("fine-tuning %s on %d images x %d patches per epoch (%d aligned pairs), validating on %d; decoded in "
             "%.1f s", cfg.get("encoder"), len(train_images), train_set.patches_per_image, train_set.n_pairs,
             len(val_set), time.perf_counter() - started)
    workers = loader_workers(cfg.get("num_workers", 1), _trainer_kwargs(cfg)["accelerator"])
    loader_args = {"num_workers": workers, "persistent_workers": workers > 0, "collate_fn": collate_patches}
    batch = int(cfg.get("batch_size", 32))
    train_loader = DataLoader(train_set, batch_size=batch, shuffle=True, drop_last=len(train_set) > batch,
                              **loader_args)
    val_loader = DataLoader(val_set, batch_size=max(1, batch // 2), shuffle=False, num_workers=workers,
                            persistent_workers=workers > 0)

    module = PatchDetector(encoder=cfg.get("encoder", "effnet_lite0"), pretrained=bool(cfg.get("pretrained", True)),
                           lr=float(cfg.get("lr", 3e-4)), weight_decay=float(cfg.get("weight_decay", 0.01)),
                           train_blocks=cfg.get("train_blocks"), max_epochs=int(cfg.get("max_epochs", 8)))
    checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", monitor="val_auroc", mode="max", save_top_k=1,
                                 save_weights_only=True, filename="best")
    callbacks = [checkpoint]
    if cfg.get("patience"):
        callbacks.append(EarlyStopping(monitor="val_auroc", mode="max", patience=int(cfg["patience"])))
    trainer = L.Trainer(max_epochs=int(cfg.get("max_epochs", 8)), callbacks=callbacks, logger=False,
                        default_root_dir=str(out_dir), enable_model_summary=False, deterministic=False,
                        num_sanity_val_steps=0, log_every_n_steps=10, **_trainer_kwargs(cfg))
    trainer.fit(module, train_loader, val_loader)
    best = checkpoint.best_model_path
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    # float16 on disk halves the file (the shipped model is a few MB); loading casts back to float32
    weights = {k.removeprefix("backbone."): (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in module.state_dict().items() if k.startswith("backbone.")}
    meta = {**module.preprocessing, "patch": patch, "encoder": json.dumps(cfg.get("encoder")),
            "train_images": len(train_images), "patches_per_image": train_set.patches_per_image,
            "aligned_pairs": train_set.n_pairs, "aligned_local": train_set.local, "val_images": len(val_set),
            "best_val_auroc": float(checkpoint.best_model_score or float("nan")),
            "epochs": int(trainer.current_epoch), "seconds": round(time.perf_counter() - started, 1)}
    path = out_dir / WEIGHTS_FILE
    if trainer.is_global_zero:
        save_file(weights, str(path), metadata={k: json.dumps(v) if not isinstance(v, str) else v
                                                for k, v in meta.items()})
    log.info("fine-tuned in %.0f s (%d epochs, best val AUROC %.4f): %s", meta["seconds"], meta["epochs"],
             meta["best_val_auroc"], path)
    return path


def _fit_soup(train, val, cfg: dict, out_dir: Path, cache_dir, max_pixels: int, seed: int, soup: int) -> Path:
    """``finetune.soup=N``: N fine-tunes from the same pretrained weights with seeds ``seed .. seed+N-1`` (patch
    draws, augmentation, batch order), their weights averaged into one network (a uniform model soup, Wortsman et al.
    2022). Early stopping on a validation split of a few hundred images picks a noisy epoch; the average of several
    such fits varies less, and inference still runs one network. Each ingredient is an ordinary cached fit (the first
    is the ``soup=1`` fit of the same seed)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    ingredients = [fit_detector(train, val, {**cfg, "soup": 1}, out_dir / f"ingredient{i}", cache_dir=cache_dir,
                                max_pixels=max_pixels, seed=seed + i) for i in range(soup)]
    if not all(p.is_file() for p in ingredients):  # a DDP rank other than 0: rank 0 writes the soup
        return out_dir / WEIGHTS_FILE
    tensors, metas = [], []
    for p in ingredients:
        with safe_open(str(p), framework="pt") as fh:
            tensors.append({k: fh.get_tensor(k) for k in fh.keys()})
            metas.append(fh.metadata() or {})
    weights = {k: (torch.stack([t[k].float() for t in tensors]).mean(0).to(v.dtype) if v.is_floating_point() else v)
               for k, v in tensors[0].items()}
    auroc = _val_auroc(weights, metas[0], val, cfg, max_pixels)
    meta = {**metas[0], "soup": str(soup), "best_val_auroc": json.dumps(auroc),
            "ingredient_val_auroc": json.dumps([float(json.loads(m.get("best_val_auroc", "NaN"))) for m in metas]),
            "ingredient_epochs": json.dumps([int(json.loads(m.get("epochs", "0"))) for m in metas])}
    path = out_dir / WEIGHTS_FILE
    save_file(weights, str(path), metadata=meta)
    log.info("model soup of %d fine-tunes: validation AUROC %.4f (ingredients %s): %s", soup, auroc,
             meta["ingredient_val_auroc"], path)
    return path


def _val_auroc(weights: dict, meta: dict, val: list[ImageRecord], cfg: dict, max_pixels: int) -> float:
    """Validation AUROC of ``weights`` scored as during fitting (grid patches, logits averaged per image)."""
    from torchmetrics.functional.classification import binary_auroc

    module = PatchDetector(encoder=cfg.get("encoder", "effnet_lite0"), pretrained=False)
    module.backbone.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    module.eval()
    val_set = PatchEvalSet(DecodedImages(val, max_pixels), int(meta.get("patch", cfg.get("patch", 128))),
                           int(cfg.get("val_patches", 4)))
    logits, labels = [], []
    with torch.no_grad():
        for x, y in DataLoader(val_set, batch_size=16):
            logits.append(module.image_logits(x))
            labels.append(y.view(-1))
    return float(binary_auroc(torch.cat(logits), torch.cat(labels).long()))


def finetuned_encoder_cfg(weights: str | Path, pool: str = "logit", batch_size: int = 64) -> dict:
    """The ``encoder`` config that runs fine-tuned weights as a feature family: ``pool=logit`` gives the patch
    logit (one column, averaged over the patch grid), ``pool=mean`` the pooled penultimate embedding."""
    weights = Path(weights)
    return {"name": "finetuned", "repo_id": weights.name, "weights_dir": str(weights.parent.resolve()),
            "pool": pool, "pretrained": True, "batch_size": batch_size, "precision": "fp32",
            "families": {"embedding": {}}}
