"""run_audit: model -> prior -> evaluation model -> [retrained models] -> attacks -> evaluations -> report.

Every stage runs through experiment.stages.run_stage: a finished stage whose hash (its resolved config,
the hashes of what it consumes, and a fingerprint of the image folders) matches is reused, so a rerun
after an interruption continues where it stopped and a finished audit reruns in seconds.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import yaml

from ..config import config_hash
from ..experiment.stages import attack_hash, evaluation_hash, run_stage
from ..models import load_model, model_spec
from ..runio import check_out_dir, file_sha256, update_manifest, write_json, write_text
from .compare import SPEC_FILE, not_retrainable, retrain_arch, target_of_retrained
from .config import AuditConfig
from .folders import audit_data, folder_fingerprint, private_classes, private_test_set

RESULTS_FILE = "audit.json"


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


def _artifact_hash(path: Path, name: str) -> str:
    path = Path(path)
    return file_sha256(path / name if path.is_dir() else path)


class _Audit:
    def __init__(self, cfg: AuditConfig, out: Path, log):
        self.cfg, self.out, self.log = cfg, Path(out), log
        self.timings: dict[str, dict] = {}
        self.utilities: dict[str, dict] = {}  # --private-test utility per target key
        self._eval_model = self._reference = None

    def stage(self, key: str, d: Path, h: str, fn) -> dict:
        outcome = run_stage(key, d, h, fn, lambda m: self.log(m.replace("[experiment]", "[audit]")))
        self.timings[key] = {"wall_s": round(outcome.wall_s, 2), "reused": outcome.reused,
                             "original_wall_s": round(outcome.original_wall_s, 2)}
        return outcome.result

    def timed(self, key: str, fn):
        t0 = time.perf_counter()
        value = fn()
        wall = round(time.perf_counter() - t0, 2)
        self.timings[key] = {"wall_s": wall, "reused": False, "original_wall_s": wall}
        return value

    def eval_model(self, eval_dir: Path):
        from ..models import load_classifier

        if self._eval_model is None:
            self._eval_model = load_classifier(eval_dir)
        return self._eval_model

    def reference(self, eval_dir: Path, scenario):
        from ..metrics import build_reference

        if self._reference is None:
            self._reference = self.timed("reference", lambda: build_reference(
                self.eval_model(eval_dir), scenario, self.cfg.evaluate.batch_size))
        return self._reference


def _check_classes(model, classes: list[str], private: Path) -> None:
    if model.num_classes != len(classes):
        raise ValueError(f"the model outputs {model.num_classes} classes but --private {private} has {len(classes)} "
                         f"class folders ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}); the "
                         "folders, sorted by name, must be the model's classes in its label order")


def run_audit(cfg: AuditConfig, model: str | Path, private: str | Path, public: str | Path, out: str | Path,
              prior: str | Path | None = None, eval_model: str | Path | None = None,
              attacks: tuple[str, ...] = ("ppa",), compare: str | None = None, contract: dict | None = None,
              private_test: str | Path | None = None, log=print) -> dict:
    """Runs (or reuses) every stage of the audit and writes OUT/audit.json, OUT/report.md, OUT/report.html."""
    from ..data import load_scenario
    from ..train import TrainConfig
    from .report import write_report

    t_start = time.perf_counter()
    check_out_dir(out)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    unknown = [a for a in attacks if a not in cfg.attacks]
    if unknown or not attacks:
        raise ValueError(f"--attacks {','.join(attacks)}: allowed {', '.join(cfg.attacks)}")
    if compare not in (None, "nls"):
        raise ValueError(f"--compare {compare!r}: the only comparison is 'nls' (negative label smoothing)")
    spec = model_spec(model, **(contract or {}))
    if compare and (why := not_retrainable(spec)):
        raise ValueError(why)
    audit = _Audit(cfg, out, log)
    target = audit.timed("load model", lambda: load_model(spec))
    classes = private_classes(private)
    _check_classes(target, classes, Path(private))
    data = audit_data(private, public, target.image_size, target.in_channels, cfg.test_fraction,
                      cfg.train_per_class, cfg.data_seed)
    held_out = (None if private_test is None else
                private_test_set(private_test, classes, target.image_size, target.in_channels))
    out = audit.out
    out.mkdir(parents=True, exist_ok=True)
    spec = spec.model_copy(update={"num_classes": target.num_classes, "image_size": target.image_size,
                                   "channels": target.in_channels})
    write_text(out / SPEC_FILE, yaml.safe_dump(spec.dump(), sort_keys=False))
    scenario = audit.timed("load data", lambda: load_scenario(data))
    fp_private, fp_public = folder_fingerprint(private), folder_fingerprint(public)

    prior_dir, p_hash = _prior(audit, data, prior, fp_public)
    eval_dir, e_hash, eval_result = _eval_model(audit, data, eval_model, fp_private, spec)

    model_file = spec.state_dict if spec.kind == "module" else spec.path
    t_hash = config_hash({"spec": spec.dump(), "file": _artifact_hash(model_file, "model.pt") if model_file else None})
    targets = [{"name": "your model", "key": "model", "alpha": None, "target": out / SPEC_FILE, "hash": t_hash,
                "train": None}]
    if compare:
        arch = retrain_arch(spec)
        for key, alpha in (("retrained_hard", 0.0), ("retrained_nls", cfg.nls.alpha)):
            tcfg = cfg.retrain.load(TrainConfig, data, {"model.name": arch, "loss.alpha": alpha,
                                                        "loss.warmup": cfg.nls.warmup, "loss.ramp": cfg.nls.ramp})
            d, h = out / key, config_hash({"run": tcfg.run_hash(), "data": fp_private})
            result = audit.stage(f"train {key}", d, h, lambda tcfg=tcfg, d=d: _train(tcfg, d))
            targets.append({"name": f"retrained, alpha {alpha:+g}", "key": key, "alpha": alpha,
                            "target": target_of_retrained(spec, d), "hash": h, "train": result})

    rows = []
    for t in targets:
        for name in attacks:
            acfg = cfg.attacks[name].load(_attack_config_model())
            a_dir, a_hash = _attack(audit, acfg, t, prior_dir, p_hash, data)
            evaluation = _evaluate(audit, t, name, a_dir, a_hash, e_hash, eval_dir, scenario)
            if held_out is not None:  # the model's utility on the user's held-out folder instead
                evaluation = {**evaluation, **_utility(audit, t, target, held_out)}
            rows.append({**{k: v for k, v in evaluation.items() if k != "timings"},
                         "model": t["name"], "key": t["key"], "alpha": t["alpha"], "attack": name,
                         "attack_dir": str(a_dir.relative_to(out)), "train_acc": (t["train"] or {}).get("train_acc")})

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
               "eval_model_test_acc": eval_result.get("test_acc"), "attacks": list(attacks), "compare": compare,
               "rows": rows, "config": cfg.model_dump(mode="json"), "num_threads": torch.get_num_threads(),
               "timings": {"stages": audit.timings}}
    reference = audit.reference(eval_dir, scenario)
    audit.timed("report", lambda: write_report(out, results, cfg, scenario, audit.eval_model(eval_dir), reference))
    results["timings"]["total_wall_s"] = round(time.perf_counter() - t_start, 2)
    write_json(out / RESULTS_FILE, results)
    update_manifest(out, results=RESULTS_FILE, report_md="report.md", report_html="report.html", model=SPEC_FILE)
    return results


def _attack_config_model():
    from ..attacks import AttackConfig

    return AttackConfig


def _train(tcfg, d: Path) -> dict:
    from ..train import train_classifier

    return train_classifier(tcfg, d)


def _prior(audit: _Audit, data, given, fp_public: str) -> tuple[Path, str]:
    from ..priors import PriorConfig, train_prior

    if given is not None:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(f"--prior {path} does not exist")
        return path, _artifact_hash(path, "generator.pt")
    size = prior_size(data.image_size, audit.cfg.prior_max_size)
    pcfg = audit.cfg.prior.load(PriorConfig, data.model_copy(update={"image_size": size}))
    d, h = audit.out / "prior", config_hash({"prior": pcfg.model_dump(mode="json"), "data": fp_public})
    audit.stage("prior", d, h, lambda: train_prior(pcfg, d))
    return d, h


def _eval_model(audit: _Audit, data, given, fp_private: str, spec) -> tuple[Path, str, dict]:
    from ..models import load_classifier
    from ..runio import read_json
    from ..train import TrainConfig

    if given is not None:
        path = Path(given)
        model = load_classifier(path)
        if model.num_classes != len(data.private_classes):
            raise ValueError(f"--eval-model {path} has {model.num_classes} classes; --private has "
                             f"{len(data.private_classes)}")
        metrics = path / "metrics.json" if path.is_dir() else path.parent / "metrics.json"
        result = (read_json(metrics).get("final") or {}) if metrics.exists() else {}
        return path, _artifact_hash(path, "model.pt"), result
    ecfg = audit.cfg.eval_model.load(TrainConfig, data)
    if spec.kind == "lsmia" and retrain_arch(spec) == ecfg.model.name:
        other = "small_cnn_wide" if ecfg.model.name != "small_cnn_wide" else "small_resnet"
        ecfg = ecfg.model_copy(update={"model": ecfg.model.model_copy(update={"name": other})})
    d, h = audit.out / "eval_model", config_hash({"run": ecfg.run_hash(), "data": fp_private})
    return d, h, audit.stage("eval_model", d, h, lambda: _train(ecfg, d))


def _attack(audit: _Audit, acfg, t: dict, prior_dir: Path, p_hash: str, data) -> tuple[Path, str]:
    from ..attacks import run_attack
    from ..models import load_classifier
    from ..priors import load_discriminator, load_generator

    d = audit.out / "attacks" / f"{t['key']}_{acfg.attack}"
    h = attack_hash(acfg, t["hash"], p_hash if acfg.needs_prior else "")

    def go():
        generator = load_generator(prior_dir) if acfg.needs_prior else None
        disc = load_discriminator(prior_dir) if acfg.attack == "gmi" else None
        summary = run_attack(acfg, load_classifier(t["target"]), generator, d, discriminator=disc, data_config=data,
                             target_path=str(t["target"]), prior_path=str(prior_dir) if acfg.needs_prior else None)
        return {k: summary[k] for k in ("attack", "num_images", "mean_confidence", "timings")}

    audit.stage(f"attack {t['key']} {acfg.attack}", d, h, go)
    return d, h


def _utility(audit: _Audit, t: dict, target, held_out) -> dict:
    """test_acc, test_nll, ece of target t on the --private-test images (computed once per target)."""
    from ..metrics import target_utility
    from ..models import load_classifier

    if t["key"] not in audit.utilities:
        model = target if t["key"] == "model" else load_classifier(t["target"])
        audit.utilities[t["key"]] = target_utility(model, *held_out, batch_size=audit.cfg.evaluate.batch_size,
                                                   n_bins=audit.cfg.evaluate.ece_bins)
    return audit.utilities[t["key"]]


def _evaluate(audit: _Audit, t: dict, name: str, a_dir: Path, a_hash: str, e_hash: str, eval_dir: Path,
              scenario) -> dict:
    from ..metrics import evaluate_attack

    d = audit.out / "evaluations" / f"{t['key']}_{name}"
    h = evaluation_hash(audit.cfg.evaluate, a_hash, e_hash)
    return audit.stage(f"evaluate {t['key']} {name}", d, h, lambda: evaluate_attack(
        a_dir, audit.eval_model(eval_dir), audit.cfg.evaluate, reference=audit.reference(eval_dir, scenario),
        out_path=d / "evaluation.json", eval_model_path=str(eval_dir)))
