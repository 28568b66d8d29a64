"""Run directories: RunDir (one config per directory, finished result, resume), atomic writes, JSON,
checkpoints that load with weights_only=True, manifest.

Nothing is ever half-written: every file goes to a temporary name in the same folder and is renamed.

Every run directory (`lsmia train`, `train-prior`, `attack`) holds the same files: run.json (the record:
format, kind, config hash, resolved config, finished, result), manifest.json (artifacts and their sha256),
checkpoint.pt while a run is resumable, and the stage's own outputs (model.pt, generator.pt, results.pt,
metrics.json). A directory that is also a stage of `lsmia experiment` / `lsmia audit` holds stage.json too:
the same kind of record, for the stage (its hash also covers what the stage consumes). Directories written
before run.json existed are read through their old files (train: metrics.json + config.yaml; prior:
config.json + metrics.json; attack: none, it resumes from partial/ as before).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .config import config_hash as hash_of_config, flatten_overrides
from .errors import UserInputError

MANIFEST = "manifest.json"
RECORD = "run.json"
CHECKPOINT = "checkpoint.pt"
RUN_FORMAT = 1  # raise when the record or a run directory's files change meaning; older formats are refused


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
    """JSON from a file; a file that is not JSON (truncated, edited) is a UserInputError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path} is not valid JSON ({e}); it is truncated or was not written by lsmia: "
                             "delete it or choose another directory") from None


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
        raise UserInputError(f"checkpoint {path} is not a file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:  # truncated / not a torch file / unpickling refused
        why = (str(e).strip().splitlines() or ["empty file"])[0]
        raise UserInputError(f"checkpoint {path} cannot be read ({type(e).__name__}: {why}); it is truncated, "
                             "not written by torch.save, or holds objects that are not plain tensors and "
                             "containers") from e


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


@contextlib.contextmanager
def exclusive(path: str | Path, log=print):
    """Holds an exclusive lock on the directory `path` (flock on `.NAME.lock` beside it, which survives the
    directory being deleted and recreated) for as long as the block runs, across processes and hosts that
    share the file system. A second holder waits, saying who holds it; the lock dies with its process
    (kill -9 included), so a crashed writer never blocks a rerun."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            log(f"{path} is being written by {holder}; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """A directory to write into (it may not exist yet); a path that is a file is a UserInputError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{flag} {path} is a file, not a directory: give a directory to write the run into")
    return path


def differing_keys(old: Optional[dict], new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two configs (keys under `ignore` left out)."""
    if not isinstance(old, dict):
        return []
    a, b = flatten_overrides(old), flatten_overrides(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, object()) != b.get(k, object()))
    return [k for k in keys if not any(k == i or k.startswith(i + ".") for i in ignore)]


class RunDir:
    """One run directory: one config per directory, the finished result, resume.

    `claim()` refuses a directory made by another config (naming the keys that differ), returns the
    finished result when there is one, and otherwise records this config and returns None: the caller
    runs, or resumes from its checkpoint. `finish(result, **artifacts)` records the result and the
    manifest. `config_hash` is what must match (default: the hash of `config`); keys in `resumable` may
    differ without refusing, and a finished run whose `extends` keys differ is resumed (prior: more steps).
    `legacy(path) -> record | None` reads a directory written before run.json existed.
    """

    def __init__(self, path: str | Path, kind: str, config: dict, config_hash: Optional[str] = None, *,
                 resumable: tuple[str, ...] = (), extends: tuple[str, ...] = (),
                 legacy: Optional[Callable[[Path], Optional[dict]]] = None, record: str = RECORD):
        self.path, self.kind, self.config = check_out_dir(path), kind, config
        self.hash = config_hash or hash_of_config(config)
        self.resumable, self.extends, self.legacy, self.record_path = resumable, extends, legacy, Path(path) / record

    def read(self) -> Optional[dict]:
        """The record on disk (None when there is none); another format or kind is a UserInputError."""
        if not self.record_path.exists():
            return self.legacy(self.path) if self.legacy is not None else None
        rec = read_json(self.record_path)
        if not isinstance(rec, dict) or rec.get("format", RUN_FORMAT) != RUN_FORMAT:
            found = rec.get("format") if isinstance(rec, dict) else type(rec).__name__
            raise UserInputError(f"{self.record_path} was written by another version of lsmia (format {found}; this "
                                 f"version reads format {RUN_FORMAT}): choose another --out or delete that directory")
        if rec.get("kind", self.kind) != self.kind:
            raise UserInputError(f"{self.path} holds a run of kind {rec.get('kind')!r}, not {self.kind!r}: choose "
                                 "another --out or delete that directory")
        return rec

    def claim(self) -> Optional[dict]:
        rec = self.read()
        if rec is not None:
            if rec.get("config_hash") != self.hash:
                keys = differing_keys(rec.get("config"), self.config, self.resumable)
                what = f"differs in {', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''}" if keys else \
                    f"hash {rec.get('config_hash')}, this config {self.hash}"
                raise UserInputError(f"{self.path} holds a {self.kind!r} run of another config ({what}); choose another "
                                     "--out or delete that directory")
            if rec.get("finished"):
                changed = differing_keys(rec.get("config"), self.config)
                if not any(k == e or k.startswith(e + ".") for k in changed for e in self.extends):
                    return rec.get("result")
        self.write(finished=False)
        return None

    def write(self, finished: bool, result: Any = None, **extra) -> None:
        write_json(self.record_path, {"format": RUN_FORMAT, "kind": self.kind, "config_hash": self.hash,
                                      "config": self.config, "finished": finished, **extra,
                                      **({"result": result} if finished else {})})

    def finish(self, result: Any, **artifacts: str | Path) -> Any:
        self.write(finished=True, result=result)
        if artifacts:
            update_manifest(self.path, **artifacts)
        return result

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT


def recorded_config(run_dir: str | Path) -> Optional[dict]:
    """The resolved config a run directory was made with: run.json, or the files older versions wrote
    (config.yaml of `lsmia train`, config.json of `lsmia train-prior`); None when there is none."""
    import yaml

    run_dir = Path(run_dir)
    if (run_dir / RECORD).exists():
        return read_json(run_dir / RECORD).get("config")
    if (run_dir / "config.yaml").exists():
        return yaml.safe_load((run_dir / "config.yaml").read_text()) or None
    if (run_dir / "config.json").exists():
        return read_json(run_dir / "config.json").get("config")
    return None
