"""Per-epoch batches: one shuffle per epoch from (seed, epoch), identical on every rank, then each rank
takes every world_size-th index (what DistributedSampler does), so a run is resumable at epoch
boundaries and the global batch is the same for any number of ranks."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """Distinct, reproducible seeds per (run seed, epoch, stream); streams separate shuffling, augmentation
    (one per rank) and dropout."""
    return (seed * 1_000_003 + epoch * 10_007 + stream * 101) % (2**63 - 1)


def rank_indices(n: int, seed: int, epoch: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's shard of the epoch's permutation; the permutation is padded by wrapping around so that
    every rank gets the same number of samples (and so the same number of steps)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
    total = -(-n // world_size) * world_size
    if total > n:
        perm = torch.cat([perm, perm[: total - n]])
    return perm[rank::world_size]


def iterate_batches(dataset: Dataset, indices: torch.Tensor, batch_size: int, num_workers: int = 0,
                    drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches in the order of `indices`. In-memory data is gathered directly; files go
    through a DataLoader (num_workers processes decode images in parallel)."""
    stop = len(indices) - len(indices) % batch_size if drop_last else len(indices)
    chunks = [indices[i:i + batch_size] for i in range(0, stop, batch_size)]
    if hasattr(dataset, "images"):
        for chunk in chunks:
            yield dataset.batch(chunk)
        return
    loader = DataLoader(dataset, batch_sampler=[c.tolist() for c in chunks], num_workers=num_workers,
                        persistent_workers=False)
    yield from loader
