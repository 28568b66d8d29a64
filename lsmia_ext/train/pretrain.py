"""Supervised pretraining of a classifier's trunk on another set of classes (TL-DMI's public phase), with a
temporary head; the classifier's own head is left as it was. Handed to defenses through
defenses.PrepareContext so that they need not import the trainer."""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..data import BatchAugment
from .batches import epoch_seed, iterate_batches
from .config import ScheduleConfig, TrainConfig
from .evaluate import evaluate_classifier
from .optimizers import build_optimizer, build_scheduler


def pretrain(model: nn.Module, train, test, num_classes: int, epochs: int, lr: float, *, cfg: TrainConfig,
             allows_hflip: bool, device: torch.device) -> dict:
    """Trains model.trunk with a temporary Linear head over `num_classes` classes on `train`: hard labels, the
    run's optimiser type at `lr`, cosine over `epochs`, the run's batch size and augmentation; shuffling,
    augmentation and dropout seeded from (cfg.seed, epoch) on streams of their own. Returns
    {"pretrain_public_acc": accuracy on `test` with the temporary head (None if empty), "pretrain_wall_s"}."""
    t0 = time.perf_counter()
    torch.manual_seed(epoch_seed(cfg.seed, 0, stream=3000))
    head = nn.Linear(model.feature_dim, num_classes).to(device)
    optimizer = build_optimizer(list(model.trunk.parameters()) + list(head.parameters()),
                                cfg.optim.model_copy(update={"lr": lr}))
    scheduler = build_scheduler(optimizer, ScheduleConfig(name="cosine"), epochs)
    augment = BatchAugment(cfg.augment, allows_hflip)
    fmt = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    model.to(memory_format=fmt).train()
    batch = min(cfg.batch_size, len(train))
    for epoch in range(epochs):
        torch.manual_seed(epoch_seed(cfg.seed, epoch, stream=3001))  # dropout
        aug_gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, stream=3002))
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, 3003)))
        for x, y in iterate_batches(train, order, batch, cfg.num_workers):
            if augment.active:
                x = augment(x, aug_gen)
            x, y = x.to(device).contiguous(memory_format=fmt), y.to(device)
            loss = F.cross_entropy(head(model.features(x)).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    if not math.isfinite(loss.item()):
        raise RuntimeError(f"pretraining diverged (loss {loss.item()}); lower defense.pretrain_lr")
    acc = None
    if len(test):
        own_head, model.head = model.head, head
        try:
            acc = evaluate_classifier(model, test, cfg.eval_batch_size, device, cfg.bf16, cfg.model.channels_last)["test_acc"]
        finally:
            model.head = own_head
    return {"pretrain_public_acc": acc, "pretrain_wall_s": time.perf_counter() - t0}
