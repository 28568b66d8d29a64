"""Run directories: atomic writes, JSON, checkpoints that load with weights_only=True, manifest.

Nothing is ever half-written: every file goes to a temporary name in the same folder and is renamed.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

MANIFEST = "manifest.json"


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: Any) -> Path:
    return _atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda p: p.write_text(text))


def save_checkpoint(path: Path, state: dict) -> Path:
    """torch.save of plain containers of tensors and numbers (loadable with weights_only=True)."""
    return _atomic(path, lambda p: torch.save(state, p))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:  # truncated / not a torch file / unpickling refused
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
                         "it is truncated, not written by torch.save, or holds objects that are not plain "
                         "tensors and containers") from e


def save_figure(path: Path, fig) -> Path:
    """Saves a matplotlib figure atomically (format from the suffix) and closes it."""
    import matplotlib.pyplot as plt

    fmt = Path(path).suffix.lstrip(".") or "png"
    try:
        return _atomic(path, lambda p: fig.savefig(p, format=fmt, dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def update_manifest(run_dir: Path, **artifacts: str | Path) -> dict:
    """Records artifacts (name -> path relative to run_dir) with their sha256 in manifest.json."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    manifest = read_json(path) if path.exists() else {"artifacts": {}}
    for name, rel in artifacts.items():
        full = run_dir / rel
        manifest["artifacts"][name] = {"path": str(rel), "sha256": file_sha256(full)}
    write_json(path, manifest)
    return manifest
