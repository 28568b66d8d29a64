"""Report blocks of a study attacked by a suite (adaptive.py): each attack, the worst case, the judges."""
from __future__ import annotations

import statistics

from .adaptive import JUDGE_METRICS, WORST
from .claims_report import after_holm, stat_cells, with_power


def _pct(values: list[float]) -> str:
    if not values:
        return "n/a"
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f}" + (f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else "")


def per_attack_table(rows: list[dict], worst_rows: list[dict], attacks: list[str]) -> tuple[list[str], list[list[str]]]:
    """Attack Acc@1 (primary judge, mean ± sd over seeds) per entry and attack, and the worst case."""
    names = list(dict.fromkeys(r["name"] for r in rows))
    body = []
    for name in names:
        cells = [_pct([r["attack_acc1"] for r in rows if r["name"] == name and r["attack"] == a
                       and r.get("attack_acc1") is not None]) for a in attacks]
        mine = [r for r in worst_rows if r["name"] == name]
        worst = _pct([r["attack_acc1"] for r in mine if r.get("attack_acc1") is not None])
        came = ", ".join(f"{a} x{sum(r.get('worst_of') == a for r in mine)}" for a in attacks
                         if any(r.get("worst_of") == a for r in mine))
        body.append([name, *cells, worst, came])
    return ["target", *(f"{a} %" for a in attacks), "worst case %", "worst case from"], body


def claim_rows(by_attack: dict, worst: dict) -> list[list[str]]:
    """C2a and the control comparisons under every attack and under the worst case."""
    body = []
    for attack, stats in [*by_attack.items(), (WORST, worst)]:
        for c in stats["claims"]:
            if c.get("part") == "attack drop":
                stat = c["metrics"]["attack_acc1"]
                verdict = with_power(c["verdict"], stat["detectable_effect"], True)
                body.append([attack, f"{c['claim']}: {c['name']} - {c['baseline']}", *stat_cells(stat, True),
                             after_holm(verdict, c)])
        for c in stats.get("controls") or []:
            verdict = with_power(c["verdict"], c["detectable_effect"], True)
            body.append([attack, f"{c['entry']} - {c['family']} (equal accuracy)", *stat_cells(c, True),
                         after_holm(verdict, c)])
    return body


def judges_table(judges: list[dict], attacks: list[str]) -> tuple[list[str], list[list[str]]]:
    order = {a: i for i, a in enumerate([*attacks, WORST])}
    present = [(k, label) for k, label in JUDGE_METRICS if any(k in j for j in judges)]
    body = [[j["name"], j["attack"], *(f"{100 * j[k]:.1f}" if k in j else "n/a" for k, _ in present)]
            for j in sorted(judges, key=lambda j: (j["name"], order.get(j["attack"], 99)))]
    return ["target", "attack", *(f"{label} %" for _, label in present)], body


def decision_sentence(d: dict) -> str:
    def pts(v):
        return "n/a" if v is None else f"{100 * v:+.1f}"

    parts = [f"Decision rule (fixed before the run): the attack drop of negative LS under the worst case is "
             f"{pts(d['drop_worst'])} points against {pts(d['drop_first'])} under {d['first_attack']} "
             f"(a change of {pts(d['shrink'])}; the rule narrows the headline beyond {100 * d['threshold']:.0f})"]
    if d["controls_reaching_0"]:
        parts.append(f"worst-case control intervals reaching 0: {', '.join(d['controls_reaching_0'])}")
    if d["controls_not_measured"]:
        parts.append(f"not measured: {', '.join(d['controls_not_measured'])}")
    return "; ".join(parts) + f". Verdict of the rule: the headline {d['headline']}."


def adaptive_blocks(results: dict) -> list[tuple]:
    """The section; [] for a study with one attack."""
    a = results.get("adaptive")
    if not a:
        return []
    attacks, overrides = a["attacks"], results["settings"]["experiment"].get("attack_suite")
    rows = [r for r in results["rows"] if r.get("attack") in attacks]
    header, body = per_attack_table(rows, a["worst_case_rows"], attacks)
    j_header, j_body = judges_table(a["judges"], attacks)
    blocks = [("h2", "Adaptive attacks: each attack and the worst case"),
              ("p", f"Every target is attacked by each attack of the suite ({', '.join(attacks)}; overrides of the "
                    f"attack recipe: {overrides}). The primary endpoint, fixed before the run, is each target's worst "
                    "case: the highest attack Acc@1 (primary judge) over the attacks. The tables above this section "
                    "(results, claims, controls) are the worst case's."),
              ("table", header, body),
              ("h2", "Claims under each attack and under the worst case"),
              ("p", "Paired by seed. Under the worst case, the attack-drop claims and the control comparisons are one "
                    "Holm family; the detectable effect beside an undecided verdict is at the level it is read "
                    "(Holm's first step for the worst case, 5 % for each attack's own rows)."),
              ("table", ["attack", "comparison", "per-seed difference (points)", "mean", "95 % t interval", "verdict"],
               claim_rows(a["by_attack"], {"claims": results["claims"], "controls": results.get("controls")})),
              ("p", decision_sentence(a["decision"])),
              ("h2", "Judges side by side"),
              ("p", "Attack Acc@1 (mean over seeds) as each judge reads the same attack images. Primary: the evaluation "
                    "model. The second evaluation model is another architecture and seed trained on the private "
                    "identities; 'both agree' counts an image only when both classify it as the attacked identity; "
                    "the nearest-neighbour judge takes the identity of the closest private training image in the "
                    "primary evaluation model's feature space."),
              ("table", j_header, j_body)]
    drops = a.get("judge_drops") or []
    if drops:
        blocks += [("p", "The worst case's attack drop as each judge reads it:"),
                   ("table", ["claim", "judge", "per-seed difference (points)", "mean", "95 % t interval"],
                    [[d["claim"], d["judge"], *stat_cells(d, True)] for d in drops])]
    return blocks
