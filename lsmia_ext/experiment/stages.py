"""Resolved stage configs of an experiment and the reuse rule every stage follows.

A stage directory holds `stage.json`, a runio.RunDir record = {"format", "kind": "stage", "stage",
"config_hash", "finished", "wall_s", "result"} (records of earlier versions lack format and kind). A
finished stage whose hash equals the hash of its resolved config (plus the hashes of the artifacts it
consumes) is reused without running anything; a stage of another hash is deleted and run again; an
unfinished one of the same hash is handed back to its stage function, which resumes it. A stage filled
from a shipped checkpoint (lsmia_ext/instruments) says so in its record ("shipped": "shipped checkpoint
(trained DATE, this config)"); it is reused only by a call that would fill it too, and run anew by one that
trains (`lsmia experiment --train-instruments`).
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import config_hash, flatten_overrides, merge_overrides
from ..executor import where
from ..runio import RunDir, exclusive

STAMP = "stage.json"


@dataclass
class ResolvedStages:
    """Every stage config of an experiment, fully validated (stage -> pydantic config)."""

    prior: Any
    eval_model: Any
    targets: dict[tuple[str, int], Any]   # (entry name, seed) -> TrainConfig
    attacks: dict[int, Any]               # seed -> AttackConfig (every target of the seed but those below)
    entry_attacks: dict[tuple[str, int], Any] = field(default_factory=dict)  # entries with an attack_set
    # attack suite (experiment attack_suite): (attack name, entry name, seed) -> AttackConfig
    suite: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    eval_model2: Any = None  # the second judge's TrainConfig (experiment eval_model2), or None

    def attack_of(self, name: str, seed: int, attack: str | None = None):
        """The AttackConfig that attacks entry `name` on `seed` (with the suite's attack `attack`)."""
        if attack is not None:
            return self.suite[(attack, name, seed)]
        return self.entry_attacks.get((name, seed), self.attacks[seed])


def resolve_stages(cfg) -> ResolvedStages:
    """Builds the stage configs: the experiment's data everywhere (a target entry may train on fewer images
    per class: entry_data), target seed = recipe seed + s and
    attack seed = recipe seed + s, so seed 0 reproduces the shipped recipes exactly; an entry's attack_set
    goes on top of the attack recipe, before the seed. With an attack suite, every attack of the suite
    is the attack recipe + the attack's overrides + the entry's attack_set + the seed (an attack with no
    overrides is the same AttackConfig, hence the same stage hash, as the study without a suite)."""
    from ..attacks import AttackConfig
    from ..priors import PriorConfig
    from ..train import TrainConfig

    prior = cfg.prior.load(PriorConfig, cfg.data)
    eval_model = cfg.eval_model.load(TrainConfig, cfg.data)
    base_target = cfg.target.load(TrainConfig, cfg.data)
    base_attack = cfg.attack.load(AttackConfig)
    targets, attacks, entry_attacks = {}, {}, {}
    for seed in cfg.seeds:
        attacks[seed] = base_attack.model_copy(update={"seed": base_attack.seed + seed})
        for entry in cfg.targets:
            if entry.attack_set:
                entry_attacks[(entry.name, seed)] = cfg.attack.load(
                    AttackConfig, extra={**flatten_overrides(entry.attack_set), "seed": base_attack.seed + seed})
            extra = merge_overrides(flatten_overrides(entry.set),
                                    {"loss.alpha": entry.alpha, "seed": base_target.seed + seed})
            targets[(entry.name, seed)] = cfg.target.load(TrainConfig, entry_data(cfg.data, entry.set), extra)
    suite = {}
    for attack, overrides in cfg.attack_overrides().items():
        for seed in cfg.seeds:
            for entry in cfg.targets:
                suite[(attack, entry.name, seed)] = cfg.attack.load(AttackConfig, extra=merge_overrides(
                    overrides, flatten_overrides(entry.attack_set), {"seed": base_attack.seed + seed}))
    eval_model2 = cfg.eval_model2.load(TrainConfig, cfg.data) if cfg.eval_model2 is not None else None
    return ResolvedStages(prior, eval_model, targets, attacks, entry_attacks, suite, eval_model2)


def entry_data(data, entry_set: dict):
    """The data a target entry trains on: the experiment's `data`, or, when the entry's `set` holds
    data.train_per_class N (at most the experiment's), the first N of each class's training images in the
    same seeded order (data/scenario.py stratified_split: a prefix, so a subset of the experiment's training
    images). The entry's own data then has no validation split: the pipeline scores it on the experiment's,
    the same images (after the experiment's training images) for every entry; test images are the same too."""
    n = flatten_overrides(entry_set).get("data.train_per_class")
    if n is None:
        return data
    if data.train_per_class is None or isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= data.train_per_class:
        raise ValueError(f"a target's set: data.train_per_class must be an integer from 1 to the experiment's "
                         f"data.train_per_class ({data.train_per_class}; only a smaller training set can be drawn "
                         f"from the same split), got {n!r}")
    return data.model_copy(update={"train_per_class": n, "val_per_class": None})


def finite_or_none(value):
    """JSON-safe numbers: NaN/inf become None (callers record that they did)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str, allow_nan=True))


@dataclass
class StageOutcome:
    result: dict
    wall_s: float          # seconds spent in this invocation (0 when reused)
    reused: bool
    original_wall_s: float  # seconds the stage took when it actually ran
    host: str = ""          # where this invocation ran (executor.where)
    worker: str = ""
    shipped: str = ""       # the stage came from a shipped checkpoint: which (stage.json "shipped"); "" if trained


def run_stage(name: str, stage_dir: Path, stage_hash: str, fn: Callable[[], dict], log=print,
              shipped: str | None = None) -> StageOutcome:
    """Runs fn() in stage_dir unless a finished run of the same hash is there (see module doc). One process
    at a time holds the stage directory (runio.exclusive); another one waits, then reuses its result.
    `shipped`: fn fills the stage from a shipped checkpoint, described by this text (recorded in stage.json)."""
    with exclusive(stage_dir, log):
        return _run_stage(name, Path(stage_dir), stage_hash, fn, log, shipped)


def _run_stage(name: str, stage_dir: Path, stage_hash: str, fn: Callable[[], dict], log,
               shipped: str | None) -> StageOutcome:
    stage = RunDir(stage_dir, "stage", {"stage": name}, stage_hash, record=STAMP)
    at = where()  # host and worker, recorded in stage.json and returned
    old = stage.read()
    if old is not None:
        if old.get("config_hash") == stage_hash and old.get("finished") and (shipped or not old.get("shipped")):
            log(f"[experiment] {name}: reused ({stage_dir}, hash {stage_hash})")
            return StageOutcome(old["result"], 0.0, True, float(old.get("wall_s", 0.0)), **at,
                                shipped=old.get("shipped", ""))
        if old.get("config_hash") != stage_hash:
            log(f"[experiment] {name}: config changed (hash {old.get('config_hash')} -> {stage_hash}); rerunning")
            shutil.rmtree(stage_dir)
        elif old.get("shipped") and not shipped:
            log(f"[experiment] {name}: holds a shipped checkpoint; training it instead")
            shutil.rmtree(stage_dir)
    elif stage.path.exists() and any(stage.path.iterdir()):
        raise FileExistsError(f"{stage_dir} exists but has no {STAMP}: it was not written by `lsmia experiment`; "
                              "move it away or choose another --out")
    note = {"shipped": shipped} if shipped else {}
    stage.write(finished=False, stage=name, **at, **note)
    log(f"[experiment] {name}: {'filling from a ' + shipped if shipped else 'running'} in {stage_dir}")
    t0 = time.perf_counter()
    result = _jsonable(fn())
    wall = time.perf_counter() - t0
    stage.write(finished=True, result=result, stage=name, wall_s=wall, **at, **note)
    log(f"[experiment] {name}: done in {wall:.1f} s")
    return StageOutcome(result, wall, False, wall, **at, shipped=shipped or "")


def attack_hash(attack_cfg, target_hash: str, prior_hash: str) -> str:
    return config_hash({"attack": attack_cfg.model_dump(mode="json"), "target": target_hash, "prior": prior_hash})


def evaluation_hash(evaluate_cfg, attack_stage_hash: str, eval_model_hash: str,
                    eval_model2_hash: str | None = None) -> str:
    """An evaluation's hash; a second judge (eval_model2_hash) enters it only when there is one."""
    second = {} if eval_model2_hash is None else {"eval_model2": eval_model2_hash}
    return config_hash({"evaluate": evaluate_cfg.model_dump(mode="json"), "attack": attack_stage_hash,
                        "eval_model": eval_model_hash, **second})
