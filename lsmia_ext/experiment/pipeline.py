"""run_experiment: prior -> evaluation model -> targets -> attacks -> evaluation -> results.json + report.

One prior and one evaluation model serve every seed (as in the paper: one pretrained generator, one
evaluation model); each seed retrains every target and re-seeds the attack. All targets of a seed are
attacked with the same AttackConfig, seed included. Every stage is reused when its hash matches
(stages.run_stage), so a rerun of the same config trains and attacks nothing.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config import config_hash
from ..executor import SequentialExecutor
from ..runio import RECORD, RunDir, write_json
from .config import ExperimentConfig
from .adaptive import suite_statistics
from .claims_report import ablation_summary
from .controls import comparisons
from .graph import run_key, start_study, study_graph, suite_attacks, target_key
from .stats import claim_statistics
from .trend import trend_statistics
from .stages import ResolvedStages, finite_or_none

RESULTS_FILE = "results.json"
PRIOR_KEYS = ("fid", "fid_public_train_vs_test", "steps", "train_seconds", "category_share_prior",
              "category_share_public_test", "category_share_min_ratio")
ROW_METRICS = {  # results.json row key -> key of metrics.score_attack / evaluate_attack
    "test_acc": "test_acc", "test_acc_sampling": "test_acc_sampling", "ece": "ece",
    "attack_acc1": "acc1", "attack_acc5": "acc5",
    "attack_acc1_initial": "acc1_initial", "attack_acc5_initial": "acc5_initial",
    "attack_acc_category": "acc_category", "attack_acc_category_initial": "acc_category_initial",
    "delta_eval": "delta_eval", "fid": "fid", "kid": "kid", "kid_ci_low": "kid_ci_low", "kid_ci_high": "kid_ci_high",
    "precision": "precision", "recall": "recall",
    "density": "density", "coverage": "coverage", "kes_train": "kes_train", "kes_test": "kes_test",
    # the judges (metrics/judges.py): the primary judge's bootstrap-over-classes interval, the
    # nearest-neighbour judge, and with a second evaluation model its Acc@1 and "both agree"
    "attack_acc1_ci_low": "acc1_ci_low", "attack_acc1_ci_high": "acc1_ci_high", "attack_acc1_nn": "acc1_nn",
    "attack_acc1_judge2": "acc1_judge2", "attack_acc1_both": "acc1_both",
}


class _Study:
    """Holds the run directory, the resolved stages and what the stages produced."""

    def __init__(self, cfg: ExperimentConfig, out_dir: Path, log, identities_sha256: str | None = None):
        self.cfg, self.out, self.log = cfg, Path(out_dir), log
        self.identities_sha256 = identities_sha256
        self.stages: ResolvedStages = cfg.stages  # resolved once, when the config was validated
        self.timings: dict[str, dict] = {}
        self.notes: list[str] = []
        self.deps: dict[str, tuple[str, ...]] = {}  # stage key -> the stages it waited for (report: critical path)

    def _record(self, key: str, outcome: dict) -> dict:
        self.timings[key] = {"wall_s": round(outcome["wall_s"], 2), "reused": outcome["reused"],
                             "original_wall_s": round(outcome["original_wall_s"], 2), "worker": outcome["worker"],
                             "after": list(self.deps.get(key, ())),
                             **({"shipped": outcome["shipped"]} if outcome.get("shipped") else {})}
        return outcome["result"]

    def _with_data(self, stage_hash: str) -> str:
        """A stage hash that also covers the identity assignment (k-means on this machine's arithmetic): a
        machine that clusters differently never reuses another assignment's prior or classifiers."""
        if self.identities_sha256 is None:
            return stage_hash
        return config_hash({"stage": stage_hash, "identities_sha256": self.identities_sha256})

    def val_acc(self, result: dict, model_dir: Path, scenario) -> float | None:
        """The classifier's validation accuracy: from its result, or scored now for a target trained before
        the validation split existed (its images were never trained on, so no retraining is needed)."""
        if "val_acc" in result or not len(scenario.private_val):
            return finite_or_none(result.get("val_acc"))
        from ..models import load_classifier

        return _val_score(load_classifier(model_dir), scenario)

    def sampled_utility(self, row: dict, evaluation: dict, model_dir: Path, scenario) -> dict:
        """The row of a target attacked with its MID bottleneck sampling: its utility scored the same way
        (validation accuracy with noise seeded by evaluate.seed, test accuracy and ECE from the evaluation's
        _sampling values), the noise-free values kept as val_acc_mean, test_acc_mean, ece_mean."""
        from ..defenses.mid import sample_at_eval
        from ..models import load_classifier

        model = load_classifier(model_dir)
        if not sample_at_eval(model, self.cfg.evaluate.seed):
            raise ValueError(f"{row['name']}: attack_set target_sampling is on but its target ({model_dir}) has no "
                             "MID bottleneck to sample")
        val = _val_score(model, scenario) if len(scenario.private_val) else None
        return {**row, "utility_sampling": True,
                "val_acc_mean": row["val_acc"], "test_acc_mean": row["test_acc"], "ece_mean": row["ece"],
                "val_acc": val, "test_acc": finite_or_none(evaluation.get("test_acc_sampling")),
                "ece": finite_or_none(evaluation.get("ece_sampling"))}

    def evaluation(self, key: str, outcome: dict) -> dict:
        """An evaluation's result; the first one that built the private reference records its time."""
        if outcome.get("reference_s") is not None and "reference" not in self.timings:
            wall = round(outcome["reference_s"], 2)
            self.timings["reference"] = {"wall_s": wall, "reused": False, "original_wall_s": wall,
                                         "worker": outcome["worker"], "part_of": f"evaluation:{key}"}
        return self._record(f"evaluation:{key}", outcome)

    def row(self, entry, seed: int, evaluation: dict, attack: str | None = None) -> dict:
        row = {"name": entry.name, "alpha": entry.alpha, "seed": seed, **({} if attack is None else {"attack": attack})}
        for key, source in ROW_METRICS.items():
            value = evaluation.get(source)
            row[key] = finite_or_none(value)
            if value is not None and row[key] is None:
                self.notes.append(f"{run_key(entry.name, seed, attack)}: {key} was {value} (not finite), reported as null")
        skipped = evaluation.get("prdc_skipped_classes")
        if skipped:
            self.notes.append(f"{run_key(entry.name, seed, attack)}: PRDC averaged without classes {skipped} (no more "
                              f"than k = {self.cfg.evaluate.prdc_k} attack or real images)")
        return row


def _val_score(model, scenario) -> float:
    """Accuracy of `model` on the scenario's validation split (CPU, batches of 512)."""
    from ..train.evaluate import evaluate_classifier

    return evaluate_classifier(model, scenario.private_val, 512, torch.device("cpu"))["test_acc"]


def _check_scenario(cfg: ExperimentConfig, stages: ResolvedStages, scenario) -> None:
    if not scenario.allows_hflip:
        bad = [s for s, a in stages.attacks.items() if a.hflip]
        if bad:
            raise ValueError(f"attack hflip is true but the {cfg.data.name!r} scenario forbids horizontal flips "
                             "(its classes are not mirror-symmetric): set attack.set.hflip=false")


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, log=print, executor=None,
                   train_instruments: bool = False) -> dict:
    """Runs (or reuses) every stage and writes OUT/results.json, OUT/report.md, OUT/report.html.
    `executor` runs the stage graph (default: executor.SequentialExecutor, in this process);
    `train_instruments` trains the prior and evaluation models even when the package ships them."""
    from ..data import load_scenario

    t_start = time.perf_counter()
    run = RunDir(out_dir, "experiment", cfg.model_dump(mode="json"))
    run.read()  # a directory of another package version or another kind of run is refused here
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    scenario = load_scenario(cfg.data)
    study = _Study(cfg, out_dir, log, scenario.identities.sha256 if scenario.identities else None)
    out = study.out
    run.write(finished=False)  # a changed config reruns only the stages it changes (each has its own record)
    _check_scenario(cfg, study.stages, scenario)

    start_study(cfg.data, scenario)
    graph = study_graph(cfg, study.stages, out, study._with_data, torch.cuda.is_available(), train_instruments)
    study.deps = {n.key: n.deps for n in graph}
    done = (executor or SequentialExecutor()).run(graph, log)
    study.prior_result = study._record("prior", done["prior"])
    eval_dir, eval_result = out / "eval_model", study._record("eval_model", done["eval_model"])
    rows, runs = [], []
    judge2 = {}
    if study.stages.eval_model2 is not None:
        e2_result = study._record("eval_model2", done["eval_model2"])
        judge2 = {"eval_model2": {"arch": study.stages.eval_model2.model.name, "dir": "eval_model2",
                                  "test_acc": finite_or_none(e2_result.get("test_acc")),
                                  "val_acc": study.val_acc(e2_result, out / "eval_model2", scenario),
                                  "train_acc": finite_or_none(e2_result.get("train_acc"))}}
    for seed in cfg.seeds:
        for entry in cfg.targets:
            t_key = target_key(entry, seed)
            t_dir = out / "targets" / t_key
            t_result = study._record(f"target:{t_key}", done[f"target:{t_key}"])
            for stage in [k for k in done if k.startswith(f"surrogates:{t_key}_") and k not in study.timings]:
                study._record(stage, done[stage])
            for attack in suite_attacks(cfg):
                key = run_key(entry.name, seed, attack)
                study._record(f"attack:{key}", done[f"attack:{key}"])
                evaluation = study.evaluation(key, done[f"evaluation:{key}"])
                row = {**study.row(entry, seed, evaluation, attack),
                       "train_acc": finite_or_none(t_result.get("train_acc")),
                       "val_acc": study.val_acc(t_result, t_dir, scenario)}
                if study.stages.attack_of(entry.name, seed, attack).target_sampling:
                    row = study.sampled_utility(row, evaluation, t_dir, scenario)
                rows.append(row)
                runs.append({"name": entry.name, "seed": seed, **({} if attack is None else {"attack_name": attack}),
                             "target": str(t_dir.relative_to(out)), "attack": str((out / "attacks" / key).relative_to(out)),
                             "evaluation": str((out / "evaluations" / key).relative_to(out))})

    results = {
        "rows": rows,
        "settings": {**study_settings(cfg), "identities_sha256": study.identities_sha256,
                     "feature_extractor": _feature_extractor(), "num_threads": torch.get_num_threads()},
        "eval_model": {"test_acc": finite_or_none(eval_result.get("test_acc")),
                       "val_acc": study.val_acc(eval_result, eval_dir, scenario),
                       "train_acc": finite_or_none(eval_result.get("train_acc")), "dir": "eval_model"},
        **judge2,
        "prior": {k: study.prior_result.get(k) for k in PRIOR_KEYS},
        "runs": runs,
        "splits": splits(scenario),
        **study_statistics(rows, cfg),
        "notes": study.notes,
        "timings": {"stages": study.timings},
    }
    results["timings"]["stages_wall_s"] = round(time.perf_counter() - t_start, 2)
    return write_results(run, out, results, cfg, scenario, t_start)


def splits(scenario) -> dict:
    """results.json splits: the number of private images of each split."""
    return {"private_train": len(scenario.private_train), "private_val": len(scenario.private_val),
            "private_test": len(scenario.private_test)}


def study_settings(cfg: ExperimentConfig) -> dict:
    """results.json settings: the experiment config and every resolved stage config (the machine's own
    entries, identities_sha256 / feature_extractor / num_threads, are added by the caller)."""
    stages = cfg.stages
    return {"experiment": cfg.model_dump(mode="json"),
            "stages": {"prior": stages.prior.model_dump(mode="json"),
                       "eval_model": stages.eval_model.model_dump(mode="json"),
                       **({"eval_model2": stages.eval_model2.model_dump(mode="json")} if stages.eval_model2 else {}),
                       "targets": {run_key(n, s): c.model_dump(mode="json") for (n, s), c in stages.targets.items()},
                       "attacks": {str(s): c.model_dump(mode="json") for s, c in stages.attacks.items()},
                       **({"entry_attacks": {run_key(n, s): c.model_dump(mode="json")
                                             for (n, s), c in stages.entry_attacks.items()}}
                          if stages.entry_attacks else {}),
                       **({"suite_attacks": {run_key(n, s, a): c.model_dump(mode="json")
                                             for (a, n, s), c in stages.suite.items()}} if stages.suite else {})},
            "shared_across_seeds": ["prior", "eval_model"],
            "per_seed": "targets retrained with TrainConfig seed = recipe seed + s; attack seed = recipe seed + s"}


def study_statistics(rows: list[dict], cfg: ExperimentConfig) -> dict:
    """Everything results.json computes from the rows: the paired claims, the trend, the comparisons
    across targets ("matched", "controls", ...) and the ablation study's claims (cfg.ablation). With an
    attack suite these are the worst case's and `adaptive` holds every attack's (adaptive.py). One
    function for a run (run_experiment) and a merge of seed shards (merge.merge_shards)."""
    def single(some_rows: list[dict]) -> dict:
        return {"claims": claim_statistics(some_rows, cfg.targets),
                "trend": trend_statistics(some_rows, cfg.targets),  # [] without a recipe of 3 alphas >= 0 (trend.py)
                **comparisons(some_rows, cfg.targets, cfg.report)}  # "matched" ([] without defenses), "controls", ...

    attacks = list(cfg.attack_overrides())
    stats = suite_statistics(rows, attacks, single) if attacks else single(rows)
    return {**stats, "ablation": ablation_summary(cfg.ablation) if cfg.ablation else None}


def write_results(run: RunDir, out: Path, results: dict, cfg: ExperimentConfig, scenario, t_start: float) -> dict:
    """Writes the report, then OUT/results.json (the last file: none is there unless the report was
    written) and the run record; adds report_s and total_wall_s to results["timings"]."""
    from .report import write_report

    t_report = time.perf_counter()
    write_report(out, results, cfg, scenario)
    results["timings"]["report_s"] = round(time.perf_counter() - t_report, 2)
    results["timings"]["total_wall_s"] = round(time.perf_counter() - t_start, 2)
    write_json(out / RESULTS_FILE, results)
    run.finish({"results": RESULTS_FILE}, results=RESULTS_FILE, report_md="report.md", report_html="report.html",
               config=RECORD)
    return results


def _feature_extractor() -> str:
    from ..metrics import FEATURE_EXTRACTOR

    return FEATURE_EXTRACTOR
