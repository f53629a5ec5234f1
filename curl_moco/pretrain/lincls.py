"""MoCo's linear-classification protocol: the number the MoCo papers report.

A linear classifier is trained on top of a **frozen** backbone kept in **eval mode** (BatchNorm
uses its running statistics, which never change), with momentum SGD on randomly augmented images
(RandomResizedCrop, scale 0.08-1, + horizontal flip, made on the device from the decoded
``load_size`` images), then evaluated top-1 / top-5 on centre crops of the held-out images. The
classifier starts at ``W ~ N(0, 0.01)``, ``b = 0``. After training, the backbone's state dict is
compared with a copy taken before: any change is an error (the official code's sanity check).

Official settings (``main_lincls.py`` of facebookresearch/moco and moco-v3):

- MoCo v1/v2: lr 30, momentum 0.9, weight decay 0, batch 256, 100 epochs, lr / 10 at epochs
  60 and 80 (``--lincls-lr 30 --lincls-epochs 100 --lincls-schedule step``);
- MoCo v3: lr 0.1 x batch / 256 (ResNet-50; ViT: base lr 3), momentum 0.9, weight decay 0,
  batch 1024, 90 epochs, cosine per epoch (the defaults here, at batch 256).

The learning rate given is for a batch of 256 and is scaled linearly with ``batch_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from curl_moco.contrastive.augment import MocoAugment
from curl_moco.pretrain.data import collate_samples
from curl_moco.pretrain.optim import learning_rate
from curl_moco.pretrain.transforms import EvalTransform

LINCLS_SCHEDULES: tuple[str, ...] = ("cosine", "step")


@dataclass
class LinclsSettings:
    """Knobs of :func:`linear_classification` (defaults: MoCo v3's ResNet recipe at batch 256).

    ``lr`` is for a batch of 256 (scaled by ``batch_size / 256``); ``schedule`` ``"cosine"``
    (v3) or ``"step"`` (v1/v2: / 10 at 60 % and 80 % of the epochs), applied per epoch."""

    epochs: int = 90
    lr: float = 0.1
    batch_size: int = 256
    schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 0.0
    num_workers: int = 0
    seed: int = 0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first impossible setting."""
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"lincls_{name}={getattr(self, name)} must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lincls_lr={self.lr} must be > 0")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(f"lincls_momentum={self.momentum} and lincls_weight_decay="
                             f"{self.weight_decay} must be >= 0")
        if self.schedule not in LINCLS_SCHEDULES:
            raise ValueError(f"lincls_schedule={self.schedule!r} is not one of "
                             f"{LINCLS_SCHEDULES}")


def backbone_snapshot(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of every parameter and buffer (BatchNorm statistics included)."""
    return {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}


def check_backbone_unchanged(backbone: nn.Module, before: dict[str, torch.Tensor]) -> None:
    """Raise ``RuntimeError`` naming the first tensor of ``backbone`` that differs from
    ``before`` (e.g. BatchNorm statistics updated in train mode)."""
    for key, value in backbone.state_dict().items():
        if not torch.equal(value.detach().cpu(), before[key]):
            raise RuntimeError(f"the frozen backbone changed during linear classification: "
                               f"{key}")


def _loader(dataset: Dataset, order: list[int], batch_size: int, num_workers: int,
            device: torch.device) -> DataLoader:
    return DataLoader(Subset(dataset, order), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, collate_fn=collate_samples,
                      pin_memory=device.type == "cuda")


@torch.no_grad()
def classify(backbone: nn.Module, classifier: nn.Linear, dataset: Dataset,
             indices: np.ndarray, transform: nn.Module, device: torch.device, *,
             batch_size: int = 256, num_workers: int = 0) -> dict[str, float]:
    """Top-1 and top-5 accuracy in [0, 1] and mean cross entropy of ``classifier(backbone(x))``
    on centre-cropped ``dataset[indices]`` (top-5 = top-1 with fewer than 6 classes)."""
    correct1 = correct5 = 0
    loss_sum = 0.0
    for batch in _loader(dataset, list(map(int, indices)), batch_size, num_workers, device):
        labels = batch["label"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            features = backbone(transform(batch["image"].to(device, non_blocking=True)))
        logits = classifier(features.float())
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += int((top[:, 0] == labels).sum())
        correct5 += int((top == labels[:, None]).any(dim=1).sum())
    n = max(len(indices), 1)
    return {"top1": correct1 / n, "top5": correct5 / n, "loss": loss_sum / n}


def linear_classification(backbone: nn.Module, train_set: Dataset, train_idx: np.ndarray,
                          val_set: Dataset, val_idx: np.ndarray, arch: dict[str, Any],
                          num_classes: int, settings: LinclsSettings, device: torch.device
                          ) -> dict[str, Any]:
    """Train a linear classifier on the frozen ``backbone`` (it needs ``out_dim``; moved to
    ``device``, eval mode,
    ``requires_grad=False`` during training, restored afterwards) and evaluate it.

    ``arch``: the backbone's :func:`~curl_moco.pretrain.export.arch_config` (input side,
    channels, normalisation). Returns ``linear_top1``/``linear_top5`` (held out, in [0, 1]),
    ``linear_train_loss`` (last epoch's mean), ``linear_epochs`` and the effective lr.
    Deterministic for a fixed ``settings.seed`` on one device.
    """
    settings.check()
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError("linear classification needs training and held-out items")
    size, channels, normalize = arch["image_size"], arch["in_channels"], arch["normalize"]
    augment = MocoAugment(size, "crop_flip", normalize=normalize).to(device)
    eval_transform = EvalTransform(size, channels, normalize).to(device)
    backbone.to(device)
    was_training = backbone.training
    grad_flags = [p.requires_grad for p in backbone.parameters()]
    before = backbone_snapshot(backbone)
    generator = torch.Generator().manual_seed(settings.seed)
    classifier = nn.Linear(int(backbone.out_dim), num_classes)
    with torch.no_grad():
        classifier.weight.normal_(0.0, 0.01, generator=generator)
        classifier.bias.zero_()
    classifier.to(device)
    base_lr = settings.lr * settings.batch_size / 256
    optimizer = torch.optim.SGD(classifier.parameters(), lr=base_lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    torch.manual_seed(settings.seed)  # the device-side augmentation draws from the global RNG
    backbone.eval()
    backbone.requires_grad_(False)
    train_loss = math.nan
    try:
        for epoch in range(settings.epochs):
            lr = learning_rate(epoch, settings.epochs, base_lr, schedule=settings.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            order = np.asarray(train_idx)[torch.randperm(len(train_idx),
                                                         generator=generator).numpy()]
            loss_sum, seen = 0.0, 0
            for batch in _loader(train_set, order.tolist(), settings.batch_size,
                                 settings.num_workers, device):
                images = augment(batch["image"].to(device, non_blocking=True))
                labels = batch["label"].to(device)
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                     enabled=device.type == "cuda"):
                    features = backbone(images)
                loss = F.cross_entropy(classifier(features.float()), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * labels.shape[0]
                seen += labels.shape[0]
            train_loss = loss_sum / max(seen, 1)
        check_backbone_unchanged(backbone, before)
        scores = classify(backbone, classifier, val_set, val_idx, eval_transform, device,
                          batch_size=settings.batch_size, num_workers=settings.num_workers)
    finally:
        for p, flag in zip(backbone.parameters(), grad_flags):
            p.requires_grad_(flag)
        backbone.train(was_training)
    return {"linear_top1": scores["top1"], "linear_top5": scores["top5"],
            "linear_val_loss": scores["loss"], "linear_train_loss": train_loss,
            "linear_epochs": settings.epochs, "linear_lr": base_lr,
            "linear_batch_size": settings.batch_size, "linear_schedule": settings.schedule}

