"""The audit's stage graph: the prior and the evaluation model (unless given), with --compare nls the two
retrainings of the audited architecture, then per (target, attack) attack -> evaluation.

Nodes run on the experiment's executor (lsmia_ext.executor): each stage is a module-level function of
plain arguments (configs, paths, hashes, the ModelSpec) that goes through experiment.stages.run_stage, so
a Dask worker in another process runs it as the driver would, and reads everything else from the run
directory. The prior, evaluation-model and evaluation stages are the experiment's own (experiment/graph.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ..config import config_hash
from ..executor import Node
from ..experiment.graph import classifier_stage, evaluation_stage, node_log, prior_stage, stage_resources
from ..experiment.stages import attack_hash, evaluation_hash, run_stage
from .compare import SPEC_FILE, retrain_arch, retrained_target, write_retrained_target


@dataclass(frozen=True)
class Target:
    """A model the audit attacks: yours, or one retrained by the node `train` (None: nothing to train)."""
    name: str
    key: str
    alpha: Optional[float]
    path: Path   # what the attack loads
    hash: str
    train: Optional[str] = None


@dataclass
class AuditGraph:
    nodes: list[Node] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)  # node key -> stage hash
    targets: list[Target] = field(default_factory=list)
    attack_dirs: dict[tuple[str, str], Path] = field(default_factory=dict)  # (target key, attack) -> its dir
    # (target key, attack) -> [(attack seed, dir)] of every repeat, the evaluated run first (--repeats)
    repeat_dirs: dict[tuple[str, str], list[tuple[int, Path]]] = field(default_factory=dict)

    def add(self, key: str, h: str, fn, args: tuple, deps: tuple, resources: dict, threads, out: Path) -> str:
        self.nodes.append(Node(key, fn, args, tuple(deps), resources, threads, output=node_log(out, key)))
        self.hashes[key] = h
        return key


def prior_size(image_size: int, cap: int) -> int:
    """The largest side b * 2**k (b in 4..7, k >= 1) the prior can draw, up to min(image_size, cap)."""
    from ..priors import resolution_schedule

    for size in range(min(image_size, cap), 7, -1):
        try:
            resolution_schedule(size)
            return size
        except ValueError:
            continue
    return 8


def retrain_stage(name: str, tcfg, d: Path, h: str, spec, log=print) -> dict:
    """Retrains the audited architecture in d. The spec's factory is registered here (retrain_arch): a Dask
    worker is another process, whose model registry has not seen the user's `module:` architecture.
    Afterwards writes what the attack loads (compare.retrained_target)."""
    retrain_arch(spec)
    outcome = classifier_stage(name, tcfg, d, h, log)
    write_retrained_target(spec, d)
    return outcome


def attack_stage(name: str, acfg, d: Path, h: str, target: Path, prior_dir: Path, data, log=print) -> dict:
    from ..attacks import run_attack
    from ..models import load_classifier
    from ..priors import load_discriminator, load_generator

    def go():
        generator = load_generator(prior_dir) if acfg.needs_prior else None
        disc = load_discriminator(prior_dir) if acfg.attack == "gmi" else None
        summary = run_attack(acfg, load_classifier(target), generator, d, discriminator=disc, data_config=data,
                             target_path=str(target), prior_path=str(prior_dir) if acfg.needs_prior else None)
        return {k: summary[k] for k in ("attack", "num_images", "mean_confidence", "timings")}

    return asdict(run_stage(name, d, h, go, log))


def audit_graph(cfg, out: Path, data, spec, arch: Optional[str], fp_private: str, fp_public: str,
                model_sha: Optional[str], attacks: dict, compare: Optional[str],
                prior: Optional[tuple[Path, str]] = None, eval_model: Optional[tuple[Path, str]] = None,
                gpu: bool = False, repeats: int = 1) -> tuple[AuditGraph, Path, Path, str]:
    """The audit's nodes, in the sequential order of earlier versions, and (graph, prior dir, evaluation model
    dir, its hash). `arch`: the registry name of the spec's architecture (compare.retrain_arch; needed for
    --compare and for an `lsmia` spec); `prior` / `eval_model`: (path, hash) of a given one, not built;
    `attacks`: {name: AttackConfig} (suite.attack_configs), directories TARGET_NAME; `model_sha`: the sha256 of
    the spec's weights file (None without one); `gpu`: stages whose config says device auto need a GPU;
    `repeats`: every attack also runs with attack seeds seed+1 .. seed+repeats-1 (directories NAME_repeatR, not
    evaluated: the driver scores their Acc@1, uncertainty.py)."""
    from ..priors import PriorConfig
    from ..train import TrainConfig

    g, threads = AuditGraph(), cfg.num_threads
    res = stage_resources(None, threads, gpu)
    on = lambda stage_cfg: stage_resources(stage_cfg, threads, gpu)  # noqa: E731
    built = []  # the given prior / evaluation model are no nodes
    if prior is None:
        size = prior_size(data.image_size, cfg.prior_max_size)
        pcfg = cfg.prior.load(PriorConfig, data.model_copy(update={"image_size": size}))
        prior = out / "prior", config_hash({"prior": pcfg.model_dump(mode="json"), "data": fp_public})
        built.append(g.add("prior", prior[1], prior_stage, (pcfg, *prior), (), res, threads, out))
    if eval_model is None:
        ecfg = cfg.eval_model.load(TrainConfig, data)
        if spec.kind == "lsmia" and arch == ecfg.model.name:
            other = "small_cnn_wide" if ecfg.model.name != "small_cnn_wide" else "small_resnet"
            ecfg = ecfg.model_copy(update={"model": ecfg.model.model_copy(update={"name": other})})
        eval_model = out / "eval_model", config_hash({"run": ecfg.run_hash(), "data": fp_private})
        built.append(g.add("eval_model", eval_model[1], classifier_stage, ("eval_model", ecfg, *eval_model), (),
                           on(ecfg), threads, out))
    (p_dir, p_hash), (e_dir, e_hash) = prior, eval_model

    g.targets.append(Target("your model", "model", None, out / SPEC_FILE,
                            config_hash({"spec": spec.dump(), "file": model_sha})))
    if compare:
        for key, alpha in (("retrained_hard", 0.0), ("retrained_nls", cfg.nls.alpha)):
            tcfg = cfg.retrain.load(TrainConfig, data, {"model.name": arch, "loss.alpha": alpha,
                                                        "loss.warmup": cfg.nls.warmup, "loss.ramp": cfg.nls.ramp})
            d, h = out / key, config_hash({"run": tcfg.run_hash(), "data": fp_private})
            train = g.add(f"train {key}", h, retrain_stage, (f"train {key}", tcfg, d, h, spec), (), on(tcfg),
                          threads, out)
            g.targets.append(Target(f"retrained, alpha {alpha:+g}", key, alpha, retrained_target(spec, d), h, train))
    for t in g.targets:
        for name, acfg in attacks.items():
            a_dir = out / "attacks" / f"{t.key}_{name}"
            a_hash = attack_hash(acfg, t.hash, p_hash if acfg.needs_prior else "")
            deps = [*(["prior"] if acfg.needs_prior and "prior" in built else []), *([t.train] if t.train else [])]
            a_key, g.attack_dirs[(t.key, name)] = f"attack {t.key} {name}", a_dir
            g.add(a_key, a_hash, attack_stage, (a_key, acfg, a_dir, a_hash, t.path, p_dir, data), deps, on(acfg),
                  threads, out)
            g.repeat_dirs[(t.key, name)] = [(acfg.seed, a_dir)]
            for r in range(1, repeats):
                rcfg = acfg.model_copy(update={"seed": acfg.seed + r})
                r_dir, r_key = a_dir.with_name(f"{a_dir.name}_repeat{r}"), f"{a_key} repeat {r}"
                r_hash = attack_hash(rcfg, t.hash, p_hash if acfg.needs_prior else "")
                g.add(r_key, r_hash, attack_stage, (r_key, rcfg, r_dir, r_hash, t.path, p_dir, data), deps, on(acfg),
                      threads, out)
                g.repeat_dirs[(t.key, name)].append((rcfg.seed, r_dir))
            v_key, v_dir = f"evaluate {t.key} {name}", out / "evaluations" / f"{t.key}_{name}"
            v_hash = evaluation_hash(cfg.evaluate, a_hash, e_hash)
            g.add(v_key, v_hash, evaluation_stage,
                  (v_key, v_dir, v_hash, a_dir, t.path, e_dir, e_hash, cfg.evaluate, data),
                  [*(["eval_model"] if "eval_model" in built else []), a_key], res, threads, out)
    return g, p_dir, e_dir, e_hash
