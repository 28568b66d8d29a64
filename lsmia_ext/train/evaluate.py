"""Per-epoch evaluation of a classifier: test accuracy, NLL (plain cross-entropy) and ECE (15 bins)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .. import dist
from ..metrics.calibration import expected_calibration_error
from .batches import iterate_batches


@torch.no_grad()
def predict_probs(model: torch.nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
                  bf16: bool = False, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax outputs and labels for the whole dataset; under torchrun each rank scores a contiguous
    shard and the shards are gathered, so every rank returns the full (N, K) result in dataset order."""
    n, rank, world = len(dataset), dist.rank(), dist.world_size()
    lo, hi = n * rank // world, n * (rank + 1) // world
    probs, labels = [], []
    for x, y in iterate_batches(dataset, torch.arange(lo, hi), batch_size, drop_last=False):
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        probs.append(F.softmax(logits.float(), dim=1).cpu())
        labels.append(y.cpu())
    parts = dist.gather_objects((torch.cat(probs) if probs else torch.empty(0, 0),
                                 torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)))
    parts = [p for p in parts if p[0].numel()]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    nll = F.nll_loss(probs.clamp_min(1e-12).log(), labels).item()
    return {"test_acc": (probs.argmax(1) == labels).double().mean().item(), "test_nll": nll,
            "ece": expected_calibration_error(probs, labels, n_bins=15)}


def evaluate_classifier(model: torch.nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
                        bf16: bool = False, channels_last: bool = False) -> dict:
    """{"test_acc", "test_nll", "ece"} of `model` (switched to eval mode) on `dataset`."""
    was_training = model.training
    model.eval()
    try:
        return classification_metrics(*predict_probs(model, dataset, batch_size, device, bf16, channels_last))
    finally:
        model.train(was_training)
