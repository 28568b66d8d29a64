"""Writes an attack run directory: results.pt, attack.json, grids/class_<c>.png, manifest."""
from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from ..runio import _atomic, save_checkpoint, update_manifest, write_json


def save_grid(path: Path, images: torch.Tensor) -> Path:
    """A near-square PNG grid of [0, 1] images, written atomically (never a half-written PNG)."""
    from torchvision.utils import make_grid, save_image

    grid = make_grid(images, nrow=max(1, math.ceil(math.sqrt(images.shape[0]))), padding=2, pad_value=1.0)
    buf = io.BytesIO()
    save_image(grid, buf, format="png")
    return _atomic(path, lambda p: p.write_bytes(buf.getvalue()))


def write_run(out_dir: Path, results: dict, record: dict) -> None:
    out_dir = Path(out_dir)
    save_checkpoint(out_dir / "results.pt", results)
    write_json(out_dir / "attack.json", record)
    grids = {}
    for c in record["classes"]:
        rel = f"grids/class_{c}.png"
        save_grid(out_dir / rel, results["images"][results["labels"] == c])
        grids[f"grid_class_{c}"] = rel
    update_manifest(out_dir, results="results.pt", attack="attack.json", **grids)
