"""A study attacked by a suite of attacks (experiment `attack_suite`): per-attack statistics and the
worst case, the primary endpoint.

Every target of every seed is attacked by every attack of the suite (rows carry `attack`). Each
attack's rows make a study of their own (the same statistics as a one-attack study: claims, controls,
matched). The primary endpoint, fixed before any result, is each target's worst case: per (entry, seed)
the row of the attack with the highest attack Acc@1 (primary judge; ties go to the earlier attack of the
suite), marked attack "worst case" and `worst_of` the attack it came from. The study's top-level
statistics (claims, controls, ...) are the worst case's; `adaptive` holds each attack's beside them.

Worst-case family: the attack-drop claims (C2a, C2.1a, ...) and the control comparisons (negative LS
against each control family at equal validation accuracy) of the worst case are one Holm family
(stats.add_holm: p_holm, verdict_holm, and the detectable effect at the first Holm step).

Decision rule (written in the study's rationale before the run): if the worst case's attack drop
(negative LS - hard labels, mean over seeds) is more than DECISION_SHRINK smaller than the first attack's
(the shipped PPA), or an interval of a worst-case control comparison reaches 0, the headline narrows to the
attack it holds for; otherwise it holds under the worst case.
"""
from __future__ import annotations

from typing import Callable

from .controls import NOT_MEASURED
from .stats import VERDICT_METRIC, add_holm, paired_differences, paired_interval

WORST = "worst case"
DECISION_SHRINK = 0.10  # 10 points of attack Acc@1
JUDGE_METRICS = (  # row key, label: the judges of an attack image (metrics.judges)
    ("attack_acc1", "evaluation model (primary)"),
    ("attack_acc1_judge2", "second evaluation model"),
    ("attack_acc1_both", "both evaluation models agree"),
    ("attack_acc1_nn", "nearest private training image"),
)


def attack_rows(rows: list[dict], attack: str) -> list[dict]:
    return [r for r in rows if r.get("attack") == attack]


def worst_case_rows(rows: list[dict], attacks: list[str]) -> list[dict]:
    """Per (entry, seed), in row order: the row of the attack with the highest attack Acc@1 (module doc);
    an (entry, seed) no attack scored keeps its first row, worst_of None."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["name"], r["seed"]), []).append(r)
    out = []
    for group in groups.values():
        scored = [r for r in group if r.get(VERDICT_METRIC) is not None]
        if not scored:
            out.append({**group[0], "attack": WORST, "worst_of": None})
            continue
        best = max(scored, key=lambda r: (r[VERDICT_METRIC], -attacks.index(r["attack"])))
        out.append({**best, "attack": WORST, "worst_of": best["attack"]})
    return out


def _family(stats: dict) -> list[tuple[str, dict, dict]]:
    """The worst-case Holm family: (label, member dict, its paired statistics)."""
    members = [(f"{c['claim']} {c['name']} - {c['baseline']}", c, c["metrics"][VERDICT_METRIC])
               for c in stats["claims"] if c.get("part") == "attack drop"]
    members += [(f"{c['entry']} - {c['family']} (equal accuracy)", c, c) for c in stats.get("controls") or []]
    return members


def holm_over_worst_case(stats: dict) -> list[dict]:
    """Holm over the worst case's attack-drop claims and control comparisons (module doc); sets p_holm,
    verdict_holm and detectable_effect_holm on each member and returns the family's summary rows. A
    control comparison that does not survive Holm reads "no difference shown" after it."""
    members = [(label, m, s) for label, m, s in _family(stats) if m.get("verdict") != NOT_MEASURED]
    if not members:
        return []
    add_holm([m for _, m, _ in members], [s for _, _, s in members])
    summary = []
    for label, member, stat in members:
        if "family" in member and member["verdict"] != "no difference shown" and (member["p_holm"] or 1) >= 0.05:
            member["verdict_holm"] = "no difference shown"
        summary.append({"comparison": label, "n": stat["n"], "mean": stat["mean"], "ci": stat["ci"], "p": stat["p"],
                        "p_holm": member["p_holm"], "verdict": member["verdict"],
                        "verdict_holm": member["verdict_holm"],
                        "detectable_effect": stat["detectable_effect"],
                        "detectable_effect_holm": member.get("detectable_effect_holm")})
    return summary


def _drop(stats: dict) -> dict | None:
    """The first attack-drop claim (negative LS - hard labels) of a statistics dict."""
    return next((c for c in stats["claims"] if c.get("part") == "attack drop"), None)


def decision(first: str, by_attack: dict, worst: dict) -> dict:
    """The pre-set decision rule (module doc) applied to the first attack's and the worst case's numbers."""
    base, now = _drop(by_attack[first]), _drop(worst)
    base_mean = base["metrics"][VERDICT_METRIC]["mean"] if base else None
    worst_mean = now["metrics"][VERDICT_METRIC]["mean"] if now else None
    shrink = None if base_mean is None or worst_mean is None else worst_mean - base_mean
    reaching = [f"{c['entry']} - {c['family']}" for c in worst.get("controls") or []
                if c.get("ci") is not None and c["ci"][1] >= 0]
    unread = [f"{c['entry']} - {c['family']}" for c in worst.get("controls") or [] if c.get("ci") is None]
    narrows = (shrink is not None and shrink > DECISION_SHRINK) or bool(reaching)
    return {"first_attack": first, "drop_first": base_mean, "drop_worst": worst_mean, "shrink": shrink,
            "threshold": DECISION_SHRINK, "controls_reaching_0": reaching, "controls_not_measured": unread,
            "headline": f"narrows to {first}" if narrows else "holds under the worst case"}


def judge_table(rows: list[dict]) -> list[dict]:
    """Per (entry, attack): the seeds' mean attack Acc@1 under every judge the rows carry."""
    out: dict[tuple, dict] = {}
    for r in rows:
        cell = out.setdefault((r["name"], r["attack"]), {"name": r["name"], "attack": r["attack"]})
        for key, _ in JUDGE_METRICS:
            if r.get(key) is not None:
                cell.setdefault(key, []).append(r[key])
    return [{**c, **{k: sum(c[k]) / len(c[k]) for k, _ in JUDGE_METRICS if k in c}} for c in out.values()]


def judge_drops(rows: list[dict], stats: dict) -> list[dict]:
    """The worst case's attack-drop claims read by every judge (paired by seed)."""
    out = []
    for c in stats["claims"]:
        if c.get("part") != "attack drop":
            continue
        for key, label in JUDGE_METRICS:
            seeds, diffs = paired_differences(rows, c["name"], c["baseline"], key)
            if diffs:
                out.append({"claim": c["claim"], "judge": label, "metric": key, "seeds": seeds, "diffs": diffs,
                            **paired_interval(diffs)})
    return out


def suite_statistics(rows: list[dict], attacks: list[str], single: Callable[[list[dict]], dict]) -> dict:
    """The study's statistics when it has an attack suite: the worst case's at the top level (`single`, the
    statistics of a one-attack study, on the worst-case rows) and `adaptive` with every attack's."""
    by_attack = {a: single(attack_rows(rows, a)) for a in attacks}
    worst_rows = worst_case_rows(rows, attacks)
    worst = single(worst_rows)
    family = holm_over_worst_case(worst)
    return {**worst, "adaptive": {
        "attacks": attacks, "primary_endpoint": WORST, "by_attack": by_attack, "worst_case_rows": worst_rows,
        "worst_case_family": family, "decision": decision(attacks[0], by_attack, worst),
        "judges": judge_table([*rows, *worst_rows]), "judge_drops": judge_drops(worst_rows, worst)}}
