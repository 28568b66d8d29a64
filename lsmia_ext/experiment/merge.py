"""One study from its seed shards: `lsmia experiment --config NAME --merge A/results.json B/results.json
... --out RUN_DIR` (merge_shards).

Seeds are independent (per seed: target -> attack -> evaluation; the prior and the evaluation model are
shared by every seed and found by their stage hash), so a study longer than one session runs in seed
shards, e.g. `--set 'seeds=[0,1]' --out runs/a` in one session and `--set 'seeds=[2,3]' --out runs/b`
in another, on any machine. The merge reads only the shards' results.json files and runs no stage.

A shard is refused (UserInputError naming its file and the first fields that differ) unless:
- its settings.experiment equals the given config's (the same --config, --preset and --set as the shards,
  less the seeds) except the fields that change no stage: `seeds` (the shards differ there by design),
  `report` and `ablation` (used only for the statistics and the report, which the merge makes from the
  given config), `rationale` (text), `num_threads` (recorded per shard) and each target entry's labels
  `family` / `added_after_attacks` (read from the given config by the comparisons);
- its resolved stage configs (settings.stages) equal the given config's: the prior's and the evaluation
  model's (so their stage hashes match: every shard used the same prior and evaluation model) and the
  targets' and attacks' of its seeds (a shard made with another version of a shipped stage file differs);
- its splits, feature extractor and identity assignment (settings.identities_sha256, when the shard
  records it) equal this machine's scenario and the first shard's;
- every row's (name, seed) is an entry and a seed of the given config and in no other shard.

The merged results.json is what run_experiment writes for the union of the seeds: rows in a run's order
(seeds ascending, entries in config order), the statistics of pipeline.study_statistics, settings with
seeds = the union, and `shards`: each shard's file, seeds, prior and evaluation model numbers (the same
stages; numbers measured on another machine, such as the prior's FID, may differ in the last digits; the
headline ones are the first shard's, as a note says). Timings are per shard (timings.shards). `runs`
point at the shards' run directories (relative to OUT): the report's image grids read them when they
are on this machine and are skipped with a note when not. Nothing is written unless every shard passes.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

from ..errors import UserInputError
from ..runio import RunDir, differing_keys, read_json
from .config import ExperimentConfig
from .graph import run_key, suite_attacks
from .pipeline import splits, study_settings, study_statistics, write_results

IGNORED = ("seeds", "report", "ablation", "rationale", "num_threads")  # experiment fields that change no stage
ENTRY_LABELS = ("family", "added_after_attacks")  # target entry fields that change no stage
SHARD_KEYS = ("rows", "settings", "runs", "prior", "eval_model", "splits", "timings")
MERGE_KIND = "experiment-merge"


def _comparable(experiment: dict) -> dict:
    """The experiment config less the fields that change no stage; targets keyed by name (so a difference
    is named as targets.NAME.FIELD)."""
    out = {k: v for k, v in experiment.items() if k not in IGNORED}
    out["targets"] = {t["name"]: {k: v for k, v in t.items() if k not in ENTRY_LABELS and k != "name"}
                      for t in experiment["targets"]}
    return out


def _read_shard(path: Path) -> dict:
    if not path.is_file():
        raise UserInputError(f"--merge {path} does not exist or is not a file: give the results.json of each "
                             "shard's `lsmia experiment` run")
    shard = read_json(path)
    lacks = [k for k in SHARD_KEYS if k not in shard] if isinstance(shard, dict) else list(SHARD_KEYS)
    if not lacks and not (isinstance(shard["settings"], dict) and "experiment" in shard["settings"]):
        lacks = ["settings.experiment"]
    if lacks:
        raise UserInputError(f"--merge {path} is not the results.json of an `lsmia experiment` run of this version "
                             f"(it lacks {', '.join(lacks)})")
    if "shards" in shard:
        raise UserInputError(f"--merge {path} is itself a merge of shards: give the shards' own results.json files")
    return shard


def _refuse_if_differs(path: Path, what: str, theirs: dict, ours: dict, hint: str) -> None:
    keys = differing_keys(theirs, ours)
    if keys:
        raise UserInputError(f"--merge {path} is a shard of another study: {what} differs from the given config's in "
                             f"{', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''} ({hint})")


def _check_shard(path: Path, shard: dict, cfg: ExperimentConfig, ours: dict, owner: dict) -> list[int]:
    """Refuses a shard of another study or a (name, seed) already merged; returns its seeds."""
    names = [t.name for t in cfg.targets]
    try:
        theirs = _comparable(shard["settings"]["experiment"])
        rows = [(r["name"], r["seed"]) for r in shard["rows"]]
        attacked = [(r["name"], r["seed"], r.get("attack")) for r in shard["rows"]]
        stages = shard["settings"]["stages"]
    except (KeyError, TypeError):
        raise UserInputError(f"--merge {path} is not the results.json of an `lsmia experiment` run (its settings or "
                             "rows lack name / seed / targets / stages)") from None
    _refuse_if_differs(path, "settings.experiment", theirs, _comparable(ours["experiment"]),
                       "give the --config, --preset and --set the shards ran with, less the seeds")
    for name, seed in rows:
        if name not in names or seed not in cfg.seeds:
            raise UserInputError(f"--merge {path}: row ({name!r}, seed {seed}) is not an entry and seed of the given "
                                 f"config (entries {names}, seeds {cfg.seeds}; widen the seeds with --set "
                                 "'seeds=[...]')")
        if owner.get((name, seed), path) != path:
            raise UserInputError(f"--merge {path}: row ({name!r}, seed {seed}) is also in {owner[name, seed]}: each "
                                 "seed must come from one shard")
        owner[name, seed] = path
    seeds = sorted({s for _, s in rows})
    keys = {"targets": [run_key(n, s) for n, s in rows], "attacks": [str(s) for s in seeds],
            "entry_attacks": [run_key(n, s) for n, s in rows],
            "suite_attacks": [run_key(n, s, a) for n, s, a in attacked if a is not None]}
    pick = lambda d: {"prior": d.get("prior"), "eval_model": d.get("eval_model"),  # noqa: E731 -- its seeds only
                      "eval_model2": d.get("eval_model2"),
                      **{k: {x: (d.get(k) or {}).get(x) for x in xs} for k, xs in keys.items()}}
    _refuse_if_differs(path, "settings.stages", pick(stages), pick(ours["stages"]),
                       "a stage config resolved differently: another version of a shipped stage file?")
    return seeds


def _check_machine(paths: list[Path], shards: list[dict], scenario) -> None:
    """Splits, feature extractor and identity assignment: the same in every shard and on this machine."""
    from ..metrics import FEATURE_EXTRACTOR

    here = {"splits": splits(scenario),
            "feature_extractor": FEATURE_EXTRACTOR,
            "identities_sha256": scenario.identities.sha256 if scenario.identities else None}
    for path, shard in zip(paths, shards):
        found = {"splits": shard["splits"], "feature_extractor": shard["settings"].get("feature_extractor"),
                 "identities_sha256": shard["settings"].get("identities_sha256", here["identities_sha256"])}
        for key, value in found.items():
            if value != here[key]:
                raise UserInputError(f"--merge {path}: its {key} {value} differs from this machine's {here[key]}: the "
                                     "shards and the merge must see the same data and feature space")


def _rebased(run: dict, shard_dir: Path, out: Path, file: str) -> dict:
    paths = {k: os.path.relpath(shard_dir / run[k], out) for k in ("target", "attack", "evaluation") if k in run}
    return {**run, **paths, "shard": file}


def merge_shards(cfg: ExperimentConfig, shard_files: Sequence[str | Path], out_dir: str | Path, log=print) -> dict:
    """Writes OUT/results.json, report.md and report.html of the study `cfg` from its seed shards'
    results.json files (module doc: what must agree); runs no stage. Returns the merged results."""
    from ..data import load_scenario

    t_start = time.perf_counter()
    paths = [Path(p) for p in shard_files]
    out = Path(out_dir).resolve()
    for path in paths:
        if path.resolve().parent == out:
            raise UserInputError(f"--out {out_dir} holds the shard {path}: write the merge into another directory")
    shards = [_read_shard(p) for p in paths]
    ours, owner = study_settings(cfg), {}
    seeds_of = [_check_shard(p, s, cfg, ours, owner) for p, s in zip(paths, shards)]
    seeds = sorted({s for ss in seeds_of for s in ss})
    merged_cfg = cfg.model_copy(update={"seeds": seeds})
    run = RunDir(out, MERGE_KIND, {"experiment": merged_cfg.model_dump(mode="json"), "shards": [str(p) for p in paths]})
    run.read()  # a run directory of `lsmia experiment` (or of another version) is refused before anything is written
    scenario = load_scenario(cfg.data)
    _check_machine(paths, shards, scenario)

    attacks = {a: j for j, a in enumerate(suite_attacks(cfg))}
    order = {(t.name, s): (seeds.index(s), i) for i, t in enumerate(cfg.targets) for s in seeds}
    rows = sorted((r for s in shards for r in s["rows"]),
                  key=lambda r: (*order[r["name"], r["seed"]], attacks.get(r.get("attack"), 0)))
    runs = sorted((_rebased(r, p.resolve().parent, out, str(p)) for p, s in zip(paths, shards) for r in s["runs"]),
                  key=lambda r: (*order[r["name"], r["seed"]], attacks.get(r.get("attack_name"), 0)))
    first, files = shards[0], [str(p) for p in paths]
    notes = [f"Merged from {len(paths)} seed shards ({', '.join(files)}): seeds {seeds}. The prior and the "
             f"evaluation model are the same stages in every shard (equal stage configs); their numbers above are "
             f"the first shard's ({files[0]}), every shard's are under results.json shards."]
    missing = [s for s in cfg.seeds if s not in seeds]
    if missing:
        notes.append(f"Seeds of the config not in any shard: {missing}.")
    notes += list(dict.fromkeys(n for s in shards for n in s.get("notes", [])))
    settings = first["settings"]
    results = {
        "rows": rows,
        "settings": {**study_settings(merged_cfg), "identities_sha256": settings.get("identities_sha256"),
                     "feature_extractor": settings["feature_extractor"], "num_threads": settings.get("num_threads")},
        "eval_model": {**first["eval_model"], "dir": os.path.relpath(paths[0].resolve().parent / "eval_model", out)},
        **({"eval_model2": {**first["eval_model2"], "dir": os.path.relpath(paths[0].resolve().parent / "eval_model2", out)}}
           if first.get("eval_model2") else {}),
        "prior": first["prior"],
        "runs": runs,
        "splits": first["splits"],
        **study_statistics(rows, merged_cfg),
        "notes": notes,
        "shards": [{"file": f, "seeds": ss, "prior": s["prior"], "eval_model": s["eval_model"],
                    "num_threads": s["settings"].get("num_threads")} for f, ss, s in zip(files, seeds_of, shards)],
        "timings": {"shards": [{"file": f, "seeds": ss, "num_threads": s["settings"].get("num_threads") or 1,
                                **{k: s["timings"].get(k) for k in ("stages", "stages_wall_s", "total_wall_s")}}
                               for f, ss, s in zip(files, seeds_of, shards)]},
    }
    results["timings"]["merge_s"] = round(time.perf_counter() - t_start, 2)
    log(f"[experiment] merged {len(paths)} shards: seeds {seeds}, {len(rows)} rows")
    return write_results(run, out, results, merged_cfg, scenario, t_start)
