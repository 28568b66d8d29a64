"""run_audit: model -> prior -> evaluation model -> [retrained models] -> attacks -> evaluations -> report.

The stages form a graph (graph.py) run by the experiment's executor: in this process one after another
(default), or on Dask (`--workers N` / `--scheduler ADDRESS`). Every stage runs through
experiment.stages.run_stage: a finished stage whose hash (its resolved config, the hashes of what it
consumes, and a fingerprint of the image folders) matches is reused, so a rerun after an interruption
continues where it stopped and a finished audit reruns in seconds.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import yaml

from ..errors import UserInputError
from ..executor import SequentialExecutor
from ..models import load_model, model_spec
from ..runio import check_out_dir, file_sha256, update_manifest, write_json, write_text
from .compare import SPEC_FILE, not_retrainable, retrain_arch
from .config import AuditConfig
from .folders import audit_data, folder_fingerprint, private_classes, private_test_set
from .graph import audit_graph
from .suite import attack_configs, worst_cases
from .uncertainty import add_uncertainty

RESULTS_FILE = "audit.json"


def _artifact_hash(path: Path, name: str) -> str:
    path = Path(path)
    return file_sha256(path / name if path.is_dir() else path)


def _timed(timings: dict, key: str, fn):
    """fn() run in the driver, its seconds recorded as timings[key]."""
    t0 = time.perf_counter()
    value = fn()
    wall = round(time.perf_counter() - t0, 2)
    timings[key] = {"wall_s": wall, "reused": False, "original_wall_s": wall}
    return value


def _record(timings: dict, nodes, done: dict) -> None:
    """Each node's outcome (seconds, reused, where it ran, what it waited for) and the private reference's
    build time, part of the first evaluation that built it."""
    for n in nodes:
        o = done[n.key]
        timings[n.key] = {"wall_s": round(o["wall_s"], 2), "reused": o["reused"],
                          "original_wall_s": round(o["original_wall_s"], 2), "worker": o["worker"],
                          "host": o["host"], "after": list(n.deps)}
        if o.get("reference_s") is not None and "reference" not in timings:
            wall = round(o["reference_s"], 2)
            timings["reference"] = {"wall_s": wall, "reused": False, "original_wall_s": wall, "worker": o["worker"],
                                    "part_of": n.key}


def _check_classes(model, classes: list[str], private: Path) -> None:
    if model.num_classes != len(classes):
        raise ValueError(f"the model outputs {model.num_classes} classes but --private {private} has {len(classes)} "
                         f"class folders ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}); the "
                         "folders, sorted by name, must be the model's classes in its label order")


def run_audit(cfg: AuditConfig, model: str | Path, private: str | Path, public: str | Path, out: str | Path,
              prior: str | Path | None = None, eval_model: str | Path | None = None,
              attacks: tuple[str, ...] | None = None, compare: str | None = None, contract: dict | None = None,
              private_test: str | Path | None = None, log=print, executor=None, repeats: int = 1,
              attack_suite: str | None = None) -> dict:
    """Runs (or reuses) every stage of the audit and writes OUT/audit.json, OUT/report.md, OUT/report.html.
    `executor` runs the stage graph (default: executor.SequentialExecutor, in this process); `repeats`: attack
    seeds per attack (uncertainty.py), reported as each row's spread; `attacks` (default ("ppa",)) or
    `attack_suite` (e.g. "adaptive", whose worst case is reported): suite.attack_configs."""
    from ..data import load_scenario
    from ..experiment.graph import eval_reference, start_study
    from .report import write_report

    t_start = time.perf_counter()
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise UserInputError(f"--repeats {repeats}: the number of attack seeds must be a whole number >= 1")
    check_out_dir(out)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    attack_cfgs = attack_configs(cfg, attacks, attack_suite)
    if compare not in (None, "nls"):
        raise ValueError(f"--compare {compare!r}: the only comparison is 'nls' (negative label smoothing)")
    spec = model_spec(model, **(contract or {}))
    if compare and (why := not_retrainable(spec)):
        raise ValueError(why)
    timings: dict[str, dict] = {}
    target = _timed(timings, "load model", lambda: load_model(spec))
    classes = private_classes(private)
    _check_classes(target, classes, Path(private))
    data = audit_data(private, public, target.image_size, target.in_channels, cfg.test_fraction,
                      cfg.train_per_class, cfg.data_seed)
    held_out = (None if private_test is None else
                private_test_set(private_test, classes, target.image_size, target.in_channels))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = spec.model_copy(update={"num_classes": target.num_classes, "image_size": target.image_size,
                                   "channels": target.in_channels})
    write_text(out / SPEC_FILE, yaml.safe_dump(spec.dump(), sort_keys=False))
    scenario = _timed(timings, "load data", lambda: load_scenario(data))
    given_eval = None if eval_model is None else _given_eval_model(eval_model, data)
    model_file = spec.state_dict if spec.kind == "module" else spec.path
    arch = retrain_arch(spec) if compare or spec.kind == "lsmia" else None  # registers a module factory here
    graph, prior_dir, eval_dir, e_hash = audit_graph(
        cfg, out, data, spec, arch, folder_fingerprint(private), folder_fingerprint(public),
        _artifact_hash(model_file, "model.pt") if model_file else None, attack_cfgs, compare,
        prior=None if prior is None else _given_prior(prior),
        eval_model=None if given_eval is None else given_eval[:2], gpu=torch.cuda.is_available(), repeats=repeats)

    start_study(data, scenario)  # evaluations in this process use the scenario loaded above
    t_stages = time.perf_counter()
    done = (executor or SequentialExecutor()).run(graph.nodes, lambda m: log(m.replace("[experiment]", "[audit]")))
    stages_wall = round(time.perf_counter() - t_stages, 2)
    _record(timings, graph.nodes, done)
    eval_result = given_eval[2] if given_eval else done["eval_model"]["result"]
    utilities = {}  # --private-test utility per target key
    rows = []
    for t in graph.targets:
        train = done[t.train]["result"] if t.train else {}
        for name in attack_cfgs:
            evaluation = done[f"evaluate {t.key} {name}"]["result"]
            if held_out is not None:  # the model's utility on the user's held-out folder instead
                if t.key not in utilities:
                    utilities[t.key] = _utility(cfg, target if t.key == "model" else t.path, held_out)
                evaluation = {**evaluation, **utilities[t.key]}
            rows.append({**{k: v for k, v in evaluation.items() if k != "timings"},
                         "model": t.name, "key": t.key, "alpha": t.alpha, "attack": name,
                         "attack_dir": str(graph.attack_dirs[(t.key, name)].relative_to(out)),
                         "train_acc": train.get("train_acc")})

    results = {"model": spec.dump(), "contract": spec.contract_text(),
               "target_features": getattr(target, "feature_source", "penultimate features"),
               "private": str(Path(private).resolve()), "public": str(Path(public).resolve()),
               "target_batch": getattr(target, "batch_note", None),
               "test_acc_source": (f"accuracy on --private-test {Path(private_test).resolve()} "
                                   f"({held_out[1].numel()} images)" if held_out is not None else
                                   "accuracy on a held-back slice of --private (may include training images)"),
               "classes": classes, "num_private_train": len(scenario.private_train),
               "num_private_test": len(scenario.private_test), "num_public": len(scenario.public_train) +
               len(scenario.public_test), "prior": str(prior_dir), "eval_model": str(eval_dir),
               "eval_model_test_acc": eval_result.get("test_acc"), "attacks": list(attack_cfgs), "compare": compare,
               "attack_suite": attack_suite, "repeats": repeats,
               "rows": rows, "config": cfg.model_dump(mode="json"), "num_threads": torch.get_num_threads(),
               "timings": {"stages": timings, "stages_wall_s": stages_wall}}
    eval_net, reference, built_s = eval_reference(eval_dir, e_hash, cfg.evaluate, data)
    if built_s is not None:  # not built by an evaluation in this process (all reused, or run on workers)
        key = "reference" if "reference" not in timings else "reference (report)"
        timings[key] = {"wall_s": round(built_s, 2), "reused": False, "original_wall_s": round(built_s, 2)}
    _timed(timings, "uncertainty", lambda: add_uncertainty(rows, graph.repeat_dirs, eval_net, cfg.evaluate))
    results["worst_case"] = worst_cases(rows)
    _timed(timings, "report", lambda: write_report(out, results, cfg, scenario, eval_net, reference))
    results["timings"]["total_wall_s"] = round(time.perf_counter() - t_start, 2)
    write_json(out / RESULTS_FILE, results)
    update_manifest(out, results=RESULTS_FILE, report_md="report.md", report_html="report.html", model=SPEC_FILE)
    return results


def _given_prior(given) -> tuple[Path, str]:
    path = Path(given)
    if not path.exists():
        raise FileNotFoundError(f"--prior {path} does not exist")
    return path, _artifact_hash(path, "generator.pt")


def _given_eval_model(given, data) -> tuple[Path, str, dict]:
    from ..models import load_classifier
    from ..runio import read_json

    path = Path(given)
    model = load_classifier(path)
    if model.num_classes != len(data.private_classes):
        raise ValueError(f"--eval-model {path} has {model.num_classes} classes; --private has "
                         f"{len(data.private_classes)}")
    metrics = path / "metrics.json" if path.is_dir() else path.parent / "metrics.json"
    result = (read_json(metrics).get("final") or {}) if metrics.exists() else {}
    return path, _artifact_hash(path, "model.pt"), result


def _utility(cfg: AuditConfig, model, held_out) -> dict:
    """test_acc, test_nll, ece of a model (or the path of one) on the --private-test images."""
    from ..metrics import target_utility
    from ..models import load_classifier

    if isinstance(model, Path):
        model = load_classifier(model)
    return target_utility(model, *held_out, batch_size=cfg.evaluate.batch_size, n_bins=cfg.evaluate.ece_bins)
