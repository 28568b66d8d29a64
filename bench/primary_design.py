"""The numbers the defenses-2025 comparison (experiment-fmnist-defenses2025, issue 29) fixes before its run:
its seeds, from a power computation at Holm's first step, and its budget, from docs/defenses' stage timings.

Seeds. The spread: docs/defenses/results.json's matched table ("matched": the pre-set costs 0.5, 1, 2, 4
points, every grid point included), its rows that compare negative LS with another family and have an sd
(2 or more seeds read), each row's sd of per-seed differences of attack Acc@1, pooled by degrees of freedom
(primary.pooled_sd). The rows overlap (the same negative-LS values enter several rows), so the pooled figure
is a description of the spread those comparisons had, not an estimate with 24 independent degrees of freedom.
Seeds = stats.seeds_for_holm(pooled sd, EFFECT, m), m = the config's primary comparisons; also printed at the
largest single sd, as a sensitivity figure.

Budget. Per-stage seconds of docs/defenses' shards (1 thread per stage; a reused stage counts its original
time): the median target of each family that study trained, the median A0 attack and evaluation. The new
families were never trained in full, so their training is scaled from the undefended target's median by the
factors in NEW_FAMILY_FACTOR (reasons there); the suite's attacks are scaled from A0 as the adaptive study's
rationale measured them (SUITE_FACTOR, SURROGATES_S, EVALUATION_S). Prints the seconds per seed and in all,
for the full adaptive suite and for A0 plus one strongest attack.

    python bench/primary_design.py [--results docs/defenses/results.json] [--config experiment-fmnist-defenses2025]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from lsmia_ext.experiment.config import load_experiment_config
from lsmia_ext.experiment.controls import control_families
from lsmia_ext.experiment.primary import pooled_sd, primary_pairs
from lsmia_ext.experiment.stats import detectable_effect_holm, seeds_for_holm
from lsmia_ext.experiment.tradeoff import defense_of

EFFECT = 0.10  # 10 points of attack Acc@1: the smallest difference that would change what we tell users
REFERENCE = "negative LS"
# training seconds of a new family's target as a multiple of the undefended target's (never timed in full):
# TL-DMI: 3 pretraining epochs over the 31 726 public images (~40 % of the recipe's 30 x 8 000 private samples)
#   plus a fine-tuning whose frozen layers need no weight gradients: taken as 1.3x;
# random erasing: a per-image mask on the batch, same steps: 1.0x;
# Trap-MID: every batch fed with its triggered copy (2x forward and backward) plus one trigger gradient step
#   per batch (another forward and backward of the triggered half): 3.0x.
NEW_FAMILY_FACTOR = {"TL-DMI": 1.3, "random erasing": 1.0, "Trap-MID": 3.0}
# the adaptive study's rationale (experiment-fmnist-adaptive): A0, A1-loss, A1 ~ A0 each; A2 ~3x, A3 ~7x A0;
# 2 surrogates of ~15 s per target (one stage, shared by A2 and A3); an evaluation with both judges ~14 s
SUITE_FACTOR = {"A0": 1.0, "A1-loss": 1.0, "A1": 1.0, "A2": 3.0, "A3": 7.0}
SURROGATES_S = 30.0
EVALUATION_S = 14.0


def spread(results: dict) -> tuple[list[dict], dict]:
    rows = [e for e in results["matched"] if REFERENCE in (e["a"], e["b"]) and e.get("sd") is not None]
    return rows, pooled_sd(rows)


def stage_medians(results: dict) -> dict:
    """{("target", family) | "attack" | "evaluation": median seconds} over the shards' stages."""
    family = {t["name"]: defense_of(_Entry(t)) for t in results["settings"]["experiment"]["targets"]}
    seconds = defaultdict(list)
    for shard in results["timings"]["shards"]:
        for key, t in shard["stages"].items():
            kind, _, rest = key.partition(":")
            if kind not in ("target", "attack", "evaluation"):
                continue
            s = t["original_wall_s"] if t["reused"] else t["wall_s"]
            seconds[("target", family[re.sub(r"_seed\d+$", "", rest)]) if kind == "target" else kind].append(s)
    return {k: statistics.median(v) for k, v in seconds.items()}


class _Entry:
    """A results.json target entry with the attributes tradeoff.defense_of reads."""

    def __init__(self, d: dict):
        self.family, self.alpha, self.set = d.get("family"), d["alpha"], d.get("set") or {}


def budget(cfg, med: dict, attacks: list[str]) -> dict:
    """Core-seconds per seed: training, attacks, surrogates, evaluations (module doc)."""
    base = med[("target", "none")]
    train = 0.0
    for t in cfg.targets:
        fam = defense_of(t)
        if fam in NEW_FAMILY_FACTOR:
            train += NEW_FAMILY_FACTOR[fam] * base
        elif fam in ("train less",):  # epochs x the undefended recipe's seconds per epoch (30 epochs)
            train += base * t.set.get("epochs", 30) / 30
        else:
            train += med.get(("target", fam), base)
    n = len(cfg.targets)
    attack = n * med["attack"] * sum(SUITE_FACTOR[a] for a in attacks)
    surrogates = n * SURROGATES_S if {"A2", "A3"} & set(attacks) else 0.0
    evaluation = n * EVALUATION_S * len(attacks)
    per_seed = train + attack + surrogates + evaluation
    return {"attacks": attacks, "train_s": train, "attack_s": attack, "surrogates_s": surrogates,
            "evaluation_s": evaluation, "per_seed_s": per_seed, "total_h": per_seed * len(cfg.seeds) / 3600}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="docs/defenses/results.json")
    ap.add_argument("--config", default="experiment-fmnist-defenses2025")
    args = ap.parse_args()
    results = json.loads(Path(args.results).read_text())
    cfg = load_experiment_config(args.config)
    m = len(primary_pairs(cfg.targets, cfg.report, control_families(cfg.targets)))
    rows, pooled = spread(results)
    print(f"negative-LS rows of {args.results} 'matched' with an sd ({len(rows)}):")
    for e in rows:
        print(f"  cost {100 * e['drop']:.1f}  {e['a']} - {e['b']}: n {e['n']}, sd {100 * e['sd']:.2f} points")
    sd = pooled["sd"]
    n = seeds_for_holm(sd, EFFECT, m)
    print(f"pooled sd {100 * sd:.2f} points ({pooled['df']} df); primary comparisons m = {m}, level 0.05/{m}")
    print(f"seeds for {100 * EFFECT:.0f} points at 80 % power: {n} (detects {100 * detectable_effect_holm(sd, n, m):.1f}; "
          f"{n - 1} seeds: {100 * detectable_effect_holm(sd, n - 1, m):.1f})")
    worst = max(e["sd"] for e in rows)
    print(f"at the largest single sd ({100 * worst:.2f}): {seeds_for_holm(worst, EFFECT, m)} seeds")
    med = stage_medians(results)
    print("median stage seconds:", {(k if isinstance(k, str) else f"target {k[1]}"): round(v, 1) for k, v in med.items()})
    suite = list(cfg.attack_overrides()) or ["A0"]
    for attacks in (suite, ["A0", "A3"], ["A0", "A1"]):
        b = budget(cfg, med, attacks)
        print(f"{'+'.join(attacks)}: per seed train {b['train_s']:.0f} s, attacks {b['attack_s']:.0f} s, surrogates "
              f"{b['surrogates_s']:.0f} s, evaluations {b['evaluation_s']:.0f} s = {b['per_seed_s']:.0f} core-s; "
              f"{len(cfg.seeds)} seeds {b['total_h']:.1f} core-hours")


if __name__ == "__main__":
    main()
