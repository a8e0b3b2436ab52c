"""``PatchDetector``: a pretrained timm backbone with one logit, fine-tuned end to end on image patches.

Input: ``(N, 3, P, P)`` float RGB in [0, 1] at native resolution (never resized); the module normalises with the
backbone's own mean/std. Output: ``(N,)`` logits, > 0 = synthetic. The loss is class-balanced inside each batch
(mean BCE over the reals + mean over the fakes, halved), so an aligned real/reconstruction pair weighs as much as
any other real and fake. Validation AUROC (torchmetrics) drives early stopping and the best checkpoint.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAUROC

from negate.models.encoders import create_trainable


def balanced_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    parts = [losses[labels == c].mean() for c in (0.0, 1.0) if (labels == c).any()]
    return torch.stack(parts).mean()


def freeze_all_but_last(model: torch.nn.Module, train_blocks: int | None) -> None:
    """``train_blocks=None``: everything trains. ``N``: only the head, the final norm and the last N entries of
    ``model.blocks`` (ViT blocks, EfficientNet stages) train — for large hub backbones on small data."""
    if train_blocks is None:
        return
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError(f"train_blocks needs a model with .blocks; {type(model).__name__} has none")
    model.requires_grad_(False)
    for module in list(blocks)[len(blocks) - int(train_blocks):] if train_blocks else []:
        module.requires_grad_(True)
    for name in ("head", "classifier", "fc_norm", "norm", "conv_head", "bn2"):
        part = getattr(model, name, None)
        if isinstance(part, torch.nn.Module):
            part.requires_grad_(True)


class PatchDetector(L.LightningModule):
    def __init__(
        self,
        encoder: str | dict = "effnet_lite0",
        pretrained: bool = True,
        lr: float = 3e-4,
        weight_decay: float = 0.01,
        train_blocks: int | None = None,
        max_epochs: int = 8,
        backbone: torch.nn.Module | None = None,
        preprocessing: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "preprocessing"])
        if backbone is None:
            backbone, preprocessing = create_trainable(encoder, pretrained=pretrained, num_classes=1)
        self.backbone = backbone
        self.preprocessing: dict[str, Any] = dict(preprocessing or {})
        freeze_all_but_last(self.backbone, train_blocks)
        self.register_buffer("mean", torch.tensor(self.preprocessing["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.preprocessing["std"]).view(1, 3, 1, 1), persistent=False)
        self.val_auroc = BinaryAUROC()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if x.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x).reshape(-1).float()

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = balanced_bce(self(x), y)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def image_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, k, 3, P, P)``: k grid patches per image -> ``(B,)``, their logits averaged like inference does."""
        return self(x.flatten(0, 1)).view(x.shape[0], x.shape[1]).mean(1)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.image_logits(x)
        y = y.view(-1)
        self.log("val_loss", F.binary_cross_entropy_with_logits(logits, y), batch_size=len(y), sync_dist=True)
        self.val_auroc.update(logits, y.long())

    def on_validation_epoch_end(self):
        self.log("val_auroc", self.val_auroc.compute(), prog_bar=True, sync_dist=True)
        self.val_auroc.reset()

    def on_train_epoch_start(self):
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.hparams.max_epochs))
        return {"optimizer": opt, "lr_scheduler": sched}
