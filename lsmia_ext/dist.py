"""torch.distributed helpers for runs launched with torchrun (gloo on CPU, NCCL on GPU).

Without torchrun's environment everything degrades to a single process (rank 0 of 1).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init(device: torch.device | str | None = None) -> None:
    """Initialises the default process group when launched by torchrun (no-op otherwise)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def local_device(requested: str = "auto") -> torch.device:
    """The device of this rank: 'auto' picks cuda:LOCAL_RANK when a GPU exists, else cpu."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(requested)


def gather_objects(obj):
    """Gathers a picklable object from every rank; returns the list on every rank."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. writes a file), the others after it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
