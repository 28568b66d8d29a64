"""The shipped instruments' manifests, and filling a stage directory from one.

NAME.json (format 1) beside the folder NAME/:
  name, stage (the study stage it was trained as: prior, eval_model, eval_model2), kind ("prior" or
  "classifier"), stage_hash (experiment/graph.py's hash of the stage, the identity assignment's sha256 mixed
  in: a study's stage is filled only when its hash is this one), run_hash (the stage config's own hash, as
  python_tests/stage_hashes.json pins it), identities_sha256, trained (UTC date the stage finished),
  trained_at, machine (host, cpu, torch threads, versions, seconds the stage took), config (the stage's
  resolved config), result (its stage.json result), files {path under NAME/: sha256}, bytes, omitted
  {path: {why, sha256, bytes}}, notes [...].

Every file is checked against its sha256 before anything is written; the bytes written are the bytes checked,
each file through a temporary name and a rename (runio). A damaged or missing file is one line naming it.
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError
from ..runio import _atomic, read_json

FORMAT = 1
SHIPPED_DIR = Path(__file__).parent  # tests point it at a folder of their own
KINDS = ("prior", "classifier")
FIX = "reinstall lsmia (pip install .) or train it with `lsmia experiment --train-instruments`"


@dataclass(frozen=True)
class Instrument:
    name: str
    folder: Path   # the stage's files
    manifest: dict

    @property
    def description(self) -> str:
        """What the stage record and the report say about a stage filled from it."""
        return f"shipped checkpoint (trained {self.manifest['trained']}, this config)"

    def read_files(self) -> dict[str, bytes]:
        """Every shipped file's bytes (path under the folder -> bytes), each checked against its sha256."""
        return {rel: self._checked(rel, want) for rel, want in self.manifest["files"].items()}

    def _checked(self, rel: str, want: str) -> bytes:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise UserInputError(f"shipped instrument {self.name}: file {rel!r} lies outside its folder: {FIX}")
        path = self.folder / rel
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UserInputError(f"shipped instrument file {path} cannot be read ({e.strerror}): {FIX}") from None
        if hashlib.sha256(data).hexdigest() != want:
            raise UserInputError(f"shipped instrument file {path} is damaged (its sha256 is not the manifest's "
                                 f"{want[:16]}...): {FIX}")
        return data

    def fill(self, stage_dir: Path, keep: tuple[str, ...] = ()) -> dict:
        """Checks every file, then empties `stage_dir` (all but the names in `keep`: the stage record) and writes
        the files into it; returns the shipped result. A damaged file stops it before anything is written."""
        files = self.read_files()
        stage_dir = Path(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        for old in stage_dir.iterdir():  # an interrupted training or fill of this hash
            if old.name not in keep:
                shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
        for rel, data in files.items():
            _atomic(stage_dir / rel, lambda p, data=data: p.write_bytes(data))
        return self.manifest["result"]


def instruments() -> list[Instrument]:
    """Every shipped instrument: one NAME.json with its folder NAME/ in SHIPPED_DIR."""
    found = []
    for path in sorted(SHIPPED_DIR.glob("*.json")):
        try:
            manifest = read_json(path)
        except UserInputError:  # truncated: said below, with what to do about a package file
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("kind") not in KINDS:
            raise UserInputError(f"{path} is not a shipped-instrument manifest (format {FORMAT}, kind one of "
                                 f"{', '.join(KINDS)}): {FIX}")
        found.append(Instrument(path.stem, path.with_suffix(""), manifest))
    return found


def find_instrument(kind: str, stage_hash: str) -> Instrument | None:
    """The shipped instrument of this kind ("prior" or "classifier") and stage hash, or None."""
    return next((i for i in instruments() if i.manifest["kind"] == kind and i.manifest.get("stage_hash") == stage_hash),
                None)
