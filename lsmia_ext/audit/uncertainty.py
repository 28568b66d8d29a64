"""How far an audit's attack Acc@1 can move (issue 30): its bootstrap-over-classes 95 % interval and, with
`--repeats N`, the spread over N attack seeds.

The interval is the evaluation's (metrics/judges.py: resample the attacked classes with replacement); an
evaluation written before it existed gets it here, from the same hits. The repeats rerun the whole attack
with seeds seed .. seed+N-1 (the first is the evaluated run) on the same target, prior and evaluation
model; each repeat's Acc@1 is the evaluation model's top-1 on its images, as the evaluation computes it.
Spread: min, max, mean and the sample standard deviation (N - 1 in the denominator; None for N = 1).
"""
from __future__ import annotations

import statistics
from pathlib import Path

from ..metrics import class_bootstrap_ci, load_attack_results, predict_logits, topk_hits


def attack_hits(attack_dir: Path, eval_net, batch_size: int):
    """(hits, labels): whether the evaluation model puts each attack image's class first."""
    _, images, labels = load_attack_results(attack_dir)
    return topk_hits(predict_logits(eval_net, images, batch_size), labels, 1), labels


def spread(values: list[float]) -> dict:
    return {"min": min(values), "max": max(values), "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None}


def add_uncertainty(rows: list[dict], repeat_dirs: dict, eval_net, evaluate_cfg) -> None:
    """Fills every row's acc1_ci_low / acc1_ci_high when its evaluation lacks them, and with more than one
    attack seed row["repeats"] = {"attack_seeds", "acc1" (one per seed), min, max, mean, sd}."""
    for row in rows:
        runs = repeat_dirs[(row["key"], row["attack"])]
        if row.get("acc1_ci_low") is None:
            hits, labels = attack_hits(runs[0][1], eval_net, evaluate_cfg.batch_size)
            row["acc1_ci_low"], row["acc1_ci_high"] = class_bootstrap_ci(
                hits, labels, evaluate_cfg.class_bootstrap, evaluate_cfg.seed)
        if len(runs) > 1:
            acc = [row["acc1"]] + [attack_hits(d, eval_net, evaluate_cfg.batch_size)[0].float().mean().item()
                                   for _, d in runs[1:]]
            row["repeats"] = {"attack_seeds": [seed for seed, _ in runs], "acc1": acc, **spread(acc)}


def interval_text(row: dict) -> str:
    """", 95 % interval over classes LO-HI %" of a row, or "" without one."""
    if row.get("acc1_ci_low") is None:
        return ""
    return f", 95 % interval over classes {100 * row['acc1_ci_low']:.1f}-{100 * row['acc1_ci_high']:.1f} %"


def seeds_text(row: dict) -> str:
    """", over N attack seeds MIN-MAX % (sd S)" of a row run with --repeats, or ""."""
    rep = row.get("repeats")
    if not rep:
        return ""
    return (f", over {len(rep['acc1'])} attack seeds {100 * rep['min']:.1f}-{100 * rep['max']:.1f} % "
            f"(sd {100 * rep['sd']:.1f})")


def movement_sentence(row: dict, n_classes: int) -> str:
    """The summary's sentence on how far the headline Acc@1 can move."""
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    text = "How far this number can move: "
    if row.get("acc1_ci_low") is not None:
        text += (f"resampling your {n_classes} classes puts it between {pct(row['acc1_ci_low'])} and "
                 f"{pct(row['acc1_ci_high'])} % (95 % bootstrap interval over classes: the attack images of one "
                 "class tend to succeed or fail together, so the classes, not the images, are the sample)")
    else:
        text += "no interval over classes was computed (evaluate.class_bootstrap is 0)"
    rep = row.get("repeats")
    if rep:
        gave = (f"{pct(rep['min'])} % every time" if rep["min"] == rep["max"] else
                f"{pct(rep['min'])} to {pct(rep['max'])} % (mean {pct(rep['mean'])} %, sd {pct(rep['sd'])} points)")
        text += f"; rerun with {len(rep['acc1'])} attack seeds it gave {gave}"
    else:
        text += ("; the attack itself was run with one seed (--repeats N reruns it with N seeds and reports "
                 "the spread)")
    return text + "."
