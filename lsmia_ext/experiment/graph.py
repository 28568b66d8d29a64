"""The study's stage graph: prior and evaluation model (shared by every seed), then per (seed, target
entry) target -> attack (needs the prior) -> evaluation (needs the evaluation model).

Each stage is a module-level function of plain arguments (configs, paths, hashes), so an executor can run
it in another process; it goes through stages.run_stage (reuse by hash, resume, one writer per directory)
and returns the outcome as a dict. Everything it needs besides its arguments is read from the run
directory. The node list is in the sequential order of earlier versions.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

from ..config import config_hash
from ..executor import Node
from .stages import STAMP, ResolvedStages, attack_hash, evaluation_hash, run_stage

_CACHE: dict = {}  # per process: the latest scenario and (evaluation model, private reference)


def run_key(name: str, seed: int, attack: str | None = None) -> str:
    """The key of an entry's run on a seed (its directories' name); with an attack suite, one per attack."""
    return f"{name}_seed{seed}" if attack is None else f"{name}_seed{seed}_{attack}"


def suite_attacks(cfg) -> list[str | None]:
    """The attacks of the study: the suite's names, or [None] (the one attack of the recipe)."""
    return list(cfg.attack_overrides()) or [None]


def target_key(entry, seed: int) -> str:
    """The run key of the targets an entry attacks: its own, or those of the entry named by target_of."""
    return run_key(entry.target_of or entry.name, seed)


def start_study(data_cfg, scenario) -> None:
    """A study starts in this process: forget the last study's reference (each study builds and times
    its own) and let its evaluations use the scenario the driver loaded."""
    _CACHE.clear()
    _CACHE[("scenario", config_hash(data_cfg))] = scenario


def _cached(key: tuple, build):
    """One value per kind (key[0]) per process: a new key replaces the last one of its kind."""
    if key not in _CACHE:
        for old in [k for k in _CACHE if k[0] == key[0]]:
            del _CACHE[old]
        _CACHE[key] = build()
    return _CACHE[key]


def _scenario(data_cfg):
    from ..data import load_scenario

    return _cached(("scenario", config_hash(data_cfg)), lambda: load_scenario(data_cfg))


def prior_stage(cfg, d: Path, h: str, log=print) -> dict:
    from ..priors import train_prior

    return asdict(run_stage("prior", d, h, lambda: train_prior(cfg, d), log))


def classifier_stage(name: str, cfg, d: Path, h: str, log=print) -> dict:
    from ..train import train_classifier

    return asdict(run_stage(name, d, h, lambda: train_classifier(cfg, d), log))


def instrument_stage(name: str, cfg, d: Path, h: str, use_shipped: bool, log=print) -> dict:
    """The study's prior (name "prior") or an evaluation model ("eval_model", "eval_model2"): with `use_shipped`,
    a stage whose hash is a shipped instrument's (lsmia_ext/instruments) is filled from its files, checked
    against their sha256, instead of trained; otherwise (--train-instruments), or for any other hash, it is
    trained by prior_stage / classifier_stage, and a stage filled earlier is trained anew."""
    from ..instruments import find_instrument

    kind = "prior" if name == "prior" else "classifier"
    shipped = find_instrument(kind, h) if use_shipped else None
    if shipped is not None:
        return asdict(run_stage(name, d, h, lambda: shipped.fill(d, keep=(STAMP,)), log, shipped.description))
    return prior_stage(cfg, d, h, log) if kind == "prior" else classifier_stage(name, cfg, d, h, log)


def surrogate_stage(name: str, aug_cfg, d: Path, h: str, target_dir: Path, prior_dir: Path, data_cfg, log=print) -> dict:
    """Model augmentation: the attacker's surrogates of one target, distilled on attacker-side images only."""
    from ..attacks.surrogates import distill_surrogates
    from ..models import load_classifier
    from ..priors import load_generator

    return asdict(run_stage(name, d, h, lambda: distill_surrogates(
        aug_cfg, load_classifier(target_dir), load_generator(prior_dir), _scenario(data_cfg), d), log))


def attack_stage(name: str, acfg, d: Path, h: str, target_dir: Path, prior_dir: Path, data_cfg,
                 surrogate_dir: Path | None = None, log=print) -> dict:
    from ..attacks import run_attack
    from ..models import load_classifier
    from ..priors import load_generator
    from ..runio import update_manifest

    def go():
        extra = {}
        if surrogate_dir is not None:
            from ..attacks.surrogates import load_surrogates

            extra["surrogates"] = load_surrogates(surrogate_dir)
        summary = run_attack(acfg, load_classifier(target_dir), load_generator(prior_dir), d,
                             data_config=data_cfg, target_path=str(target_dir), prior_path=str(prior_dir), **extra)
        update_manifest(d, results="results.pt", attack="attack.json")
        return summary

    return asdict(run_stage(name, d, h, go, log))


def eval_reference(eval_dir: Path, e_hash: str, evaluate_cfg, data_cfg) -> tuple:
    """(evaluation model, its private reference, seconds spent building them or None when cached): built
    once per process and evaluation model."""
    import time

    from ..metrics import build_reference
    from ..models import load_classifier

    built = [None]

    def build():
        t0 = time.perf_counter()
        model = load_classifier(eval_dir)
        ref = build_reference(model, _scenario(data_cfg), evaluate_cfg.batch_size)
        built[0] = time.perf_counter() - t0
        return model, ref

    model, ref = _cached(("reference", e_hash, evaluate_cfg.batch_size, config_hash(data_cfg)), build)
    return model, ref, built[0]


def _second_judge(eval2_dir: Path, e2_hash: str):
    from ..models import load_classifier

    return _cached(("judge2", e2_hash), lambda: load_classifier(eval2_dir))


def evaluation_stage(name: str, d: Path, h: str, attack_dir: Path, target_dir: Path, eval_dir: Path, e_hash: str,
                     evaluate_cfg, data_cfg, eval2_dir: Path | None = None, e2_hash: str | None = None,
                     log=print) -> dict:
    """The target is loaded from target_dir, not from the path attack.json recorded: a reused attack stage
    may have recorded a path relative to another working directory, or the run may have moved. Also returns
    `reference_s`: seconds spent building the evaluation model's private reference when this call built it
    (once per process and evaluation model; never when the stage is reused). With a second judge
    (eval2_dir), it scores the attack images beside the first."""
    from ..metrics import evaluate_attack

    built = {"reference_s": None}

    def go():
        model, ref, built["reference_s"] = eval_reference(eval_dir, e_hash, evaluate_cfg, data_cfg)
        extra = {} if eval2_dir is None else {"second_model": _second_judge(eval2_dir, e2_hash)}
        return evaluate_attack(attack_dir, model, evaluate_cfg, reference=ref, out_path=d / "evaluation.json",
                               eval_model_path=str(eval_dir), target_path=target_dir, **extra)

    return {**asdict(run_stage(name, d, h, go, log)), **built}


def stage_resources(stage_cfg, threads: int | None, gpu: bool) -> dict:
    """The Dask resources of a stage: its threads, and GPU: 1 when its config runs on CUDA (device cuda, or
    auto on a machine with a GPU); `stage_cfg` None: threads only."""
    res = {"threads": threads or 1}
    device = getattr(stage_cfg, "device", None)
    return {**res, "GPU": 1} if device == "cuda" or (device == "auto" and gpu) else res


def node_log(out: Path, key: str) -> str:
    """Where a node's prints go on a Dask worker: OUT/logs/KEY.log."""
    return str(out / "logs" / f"{key.replace(':', '_').replace(' ', '_')}.log")


def study_graph(cfg, stages: ResolvedStages, out: Path, with_data: Callable[[str], str], gpu: bool,
                train_instruments: bool = False) -> list[Node]:
    """The nodes of the study (keys as in results.json timings: prior, eval_model, target:K, attack:K,
    evaluation:K); `with_data` adds the identity assignment to a stage hash; `gpu` marks the training
    and attack stages that run on CUDA as needing a GPU; `train_instruments` trains the prior and evaluation
    models even when the package ships them (instrument_stage). On a Dask worker a stage's prints go to
    OUT/logs/KEY.log."""
    shipped_ok = not train_instruments
    threads = cfg.num_threads
    res = stage_resources(None, threads, gpu)
    node = lambda key, *a: Node(key, *a, output=node_log(out, key))  # noqa: E731
    on = lambda stage_cfg: stage_resources(stage_cfg, threads, gpu)  # noqa: E731

    p_dir, p_hash = out / "prior", with_data(stages.prior.run_hash())
    e_dir, e_hash = out / "eval_model", with_data(stages.eval_model.run_hash())
    nodes = [node("prior", instrument_stage, ("prior", stages.prior, p_dir, p_hash, shipped_ok), (), res, threads),
             node("eval_model", instrument_stage, ("eval_model", stages.eval_model, e_dir, e_hash, shipped_ok), (),
                  on(stages.eval_model), threads)]
    judge2: tuple = ()  # evaluation_stage's second-judge arguments (eval2_dir, e2_hash)
    eval_deps: tuple[str, ...] = ("eval_model",)
    if stages.eval_model2 is not None:
        e2_dir, e2_hash = out / "eval_model2", with_data(stages.eval_model2.run_hash())
        nodes.append(node("eval_model2", instrument_stage, ("eval_model2", stages.eval_model2, e2_dir, e2_hash,
                                                            shipped_ok), (), on(stages.eval_model2), threads))
        judge2, eval_deps = (e2_dir, e2_hash), ("eval_model", "eval_model2")
    surrogate_keys: set[str] = set()
    for seed in cfg.seeds:
        for entry in cfg.targets:
            t_key = target_key(entry, seed)
            tcfg = stages.targets[(entry.name, seed)]
            t_dir, t_hash = out / "targets" / t_key, with_data(tcfg.run_hash())
            if entry.target_of is None:
                nodes.append(node(f"target:{t_key}", classifier_stage, (f"target:{t_key}", tcfg, t_dir, t_hash), (),
                                  on(tcfg), threads))
            for attack in suite_attacks(cfg):
                key, acfg = run_key(entry.name, seed, attack), stages.attack_of(entry.name, seed, attack)
                a_dir, a_hash = out / "attacks" / key, attack_hash(acfg, t_hash, p_hash)
                v_dir = out / "evaluations" / key
                v_hash = evaluation_hash(cfg.evaluate, a_hash, e_hash, *judge2[1:])
                a_deps = ("prior", f"target:{t_key}")
                aug = getattr(acfg, "augmentation", None)
                if aug is not None:
                    s_key, s_dir, s_hash = surrogate_node(out, t_key, aug, t_hash, p_hash)
                    if s_key not in surrogate_keys:  # A2 and A3 share one target's surrogates
                        surrogate_keys.add(s_key)
                        nodes.append(node(s_key, surrogate_stage, (s_key, aug, s_dir, s_hash, t_dir, p_dir, cfg.data),
                                          ("prior", f"target:{t_key}"), res, threads))
                    a_deps, s_dir_arg = (*a_deps, s_key), (s_dir,)
                else:
                    s_dir_arg = ()
                nodes += [
                    node(f"attack:{key}", attack_stage,
                         (f"attack {key}", acfg, a_dir, a_hash, t_dir, p_dir, cfg.data, *s_dir_arg), a_deps, on(acfg),
                         threads),
                    node(f"evaluation:{key}", evaluation_stage,
                         (f"evaluation {key}", v_dir, v_hash, a_dir, t_dir, e_dir, e_hash, cfg.evaluate, cfg.data,
                          *judge2),
                         (*eval_deps, f"attack:{key}"), res, threads)]
    return nodes


def surrogate_node(out: Path, t_key: str, aug, t_hash: str, p_hash: str) -> tuple[str, Path, str]:
    """(node key, directory, stage hash) of a target's surrogates: one stage per target and augmentation
    config, shared by every attack of the suite that uses the same surrogates."""
    from ..attacks.surrogates import surrogate_hash

    s_hash = surrogate_hash(aug, t_hash, p_hash)
    s_key = f"surrogates:{t_key}_{s_hash[:8]}"
    return s_key, out / "surrogates" / f"{t_key}_{s_hash[:8]}", s_hash
