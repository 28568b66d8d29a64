"""Shipping a finished instrument stage of a study (its prior, evaluation model or second judge; never a
target) into the package: bench/ship_instrument.py RUN_DIR/STAGE.

The stage's files are copied as they are (all but stage.json, whose result goes into the manifest, hidden
temporary names and OMIT); the manifest (shipped.py) records the stage hash from stage.json, every file's
sha256, when and where it was trained and its resolved config, so that the same machine can retrain it
(`lsmia experiment --train-instruments`) and compare.

Choice: the prior's checkpoint.pt is not shipped (OMIT): it is the training's resume state, read only to
resume or extend a run, which a finished stage of this hash never does (a config change moves the hash and
the stage directory is deleted); it is ten times the generator. Its sha256 and size stay in the manifest,
and the stage's manifest.json, copied unchanged, still lists it.
"""
from __future__ import annotations

import datetime
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

from ..errors import UserInputError
from ..runio import RECORD, file_sha256, read_json, write_json
from . import shipped

STAGE_RECORD = "stage.json"  # experiment/stages.py STAMP (not imported: experiment imports this package)
STAGES = ("prior", "eval_model", "eval_model2")
OMIT = {"checkpoint.pt": "the training's resume state (networks, EMA copy, optimiser and RNG states): read only to "
                         "resume or extend training, which a finished stage of this hash never does"}


def ship_stage(stage_dir: str | Path, dest: str | Path | None = None, name: str | None = None,
               notes: tuple[str, ...] = ()) -> shipped.Instrument:
    """Copies the finished stage `stage_dir` to DEST/NAME/ and writes DEST/NAME.json (DEST: the package's
    instruments folder; NAME: the stage's config name and the first 8 digits of its hash); replaces an
    instrument of the same name."""
    stage_dir, dest = Path(stage_dir), Path(dest or shipped.SHIPPED_DIR)
    record = _finished_record(stage_dir)
    stage, run = record["stage"], read_json(stage_dir / RECORD)
    kind = "prior" if stage == "prior" else "classifier"
    study = stage_dir.parent / RECORD  # the experiment's run.json: the stage's config name and threads
    study_cfg = read_json(study).get("config", {}) if study.exists() else {}
    name = name or f"{study_cfg.get(stage, {}).get('config', stage)}_{record['config_hash'][:8]}"
    files = sorted(p for p in stage_dir.rglob("*") if p.is_file() and _shipped(p.relative_to(stage_dir)))
    folder = dest / name
    if folder.exists():
        shutil.rmtree(folder)
    for path in files:
        (folder / path.relative_to(stage_dir)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.relative_to(stage_dir))
    copied = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    data = read_json(stage_dir / "data_manifest.json") if (stage_dir / "data_manifest.json").exists() else {}
    finished = datetime.datetime.fromtimestamp((stage_dir / STAGE_RECORD).stat().st_mtime, datetime.timezone.utc)
    manifest = {
        "format": shipped.FORMAT, "name": name, "stage": stage, "kind": kind,
        "stage_hash": record["config_hash"], "run_hash": _run_hash(kind, run["config"]),
        "identities_sha256": data.get("identities_sha256"),
        "trained": finished.strftime("%Y-%m-%d"), "trained_at": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": _machine(record, study_cfg.get("num_threads")),
        "config": run["config"], "result": record["result"],
        "files": {rel: file_sha256(p) for rel, p in copied.items()},
        "bytes": sum(p.stat().st_size for p in copied.values()),
        "omitted": {rel: {"why": why, "sha256": file_sha256(stage_dir / rel), "bytes": (stage_dir / rel).stat().st_size}
                    for rel, why in OMIT.items() if (stage_dir / rel).is_file()},
        "notes": list(notes),
    }
    write_json(dest / f"{name}.json", manifest)
    return shipped.Instrument(name, folder, manifest)


def _finished_record(stage_dir: Path) -> dict:
    if not (stage_dir / STAGE_RECORD).is_file():
        raise UserInputError(f"{stage_dir} has no {STAGE_RECORD}: give a stage directory of `lsmia experiment` "
                             "(RUN_DIR/prior, RUN_DIR/eval_model or RUN_DIR/eval_model2)")
    record = read_json(stage_dir / STAGE_RECORD)
    if record.get("stage") not in STAGES:
        raise UserInputError(f"{stage_dir} is the stage {record.get('stage')!r}: only the instruments "
                             f"{', '.join(STAGES)} are shipped, never a target")
    if not record.get("finished"):
        raise UserInputError(f"{stage_dir} is not finished ({STAGE_RECORD} finished is false): let the study finish it")
    if record.get("shipped"):
        raise UserInputError(f"{stage_dir} was itself filled from a {record['shipped']}: ship a stage that was trained")
    return record


def _shipped(rel: Path) -> bool:
    """Whether a file of the stage directory goes into the package."""
    return rel.as_posix() not in (STAGE_RECORD, *OMIT) and not any(part.startswith(".") for part in rel.parts)


def _run_hash(kind: str, config: dict) -> str:
    if kind == "prior":
        from ..priors import PriorConfig

        return PriorConfig.model_validate(config).run_hash()
    from ..train import TrainConfig

    return TrainConfig.model_validate(config).run_hash()


def _machine(record: dict, study_threads: int | None) -> dict:
    """Where the stage was trained: host and seconds from its record; CPU and versions of this machine, which
    is that host when the stage is shipped where it ran (`cpu` is null otherwise)."""
    import torch

    here = socket.gethostname() == record.get("host")
    return {"host": record.get("host"), "cpu": _cpu_model() if here else None,
            "cores": os.cpu_count() if here else None, "torch_threads": study_threads,
            "torch": torch.__version__, "python": platform.python_version(),
            "git_head_when_shipped": _git_head(), "wall_s": record.get("wall_s")}


def _cpu_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def _git_head() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
