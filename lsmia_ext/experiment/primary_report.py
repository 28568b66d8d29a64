"""Report blocks of the primary comparisons (primary.py): one table (family, cost read, seeds read, paired
difference to the reference, interval, p, Holm p, verdict with the effect detectable at Holm's first step)
and the verdicts in words."""
from __future__ import annotations

from .claims_report import holm_level, with_power
from .matched import NOT_MEASURED
from .matched_report import AXIS, _ci, _mean, _p, _pts


def primary_verdict(e: dict) -> str:
    """The Holm verdict; when undecided, the effect the same seeds detect with 80 % power at Holm's first step."""
    return with_power(e["verdict"], e.get("detectable_effect_holm"), True, holm_level(e))


def _seeds(e: dict) -> str:
    unread = [f"{who} on seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}"
              for who, s in ((e["family"], e["unread"]), (e["reference"], e["unread_reference"])) if s]
    return f"{e['n']} of {e['seeds_total']}" + (f" (not read: {'; '.join(unread)})" if unread else "")


def primary_table(entries: list[dict]) -> tuple:
    ref = entries[0]["reference"]
    header = ["family", "cost read (points)", "seeds read", "family attack Acc@1 %", f"{ref} attack Acc@1 %",
              f"family - {ref} (points)", "95 % CI (unadjusted)", "p", "p (Holm)", "verdict"]
    body = [[e["family"], f"{100 * e['cost']:.1f}", _seeds(e), _mean(e["values"]), _mean(e["reference_values"]),
             _pts(e["mean"]), _ci(e["ci"]), _p(e["p"]), _p(e["p_holm"]), primary_verdict(e)] for e in entries]
    return "table", header, body


def primary_sentence(entries: list[dict]) -> str:
    """Which family is more private than the reference at the primary cost, which are not told apart."""
    ref, cost = entries[0]["reference"], f"{100 * entries[0]['cost']:.1f}"
    told = [f"{e['verdict']} ({e['family']} - {ref} = {_pts(e['mean'])} points, 95 % CI {_ci(e['ci'])}, Holm p "
            f"{_p(e['p_holm'])}, {e['n']} seeds)" for e in entries if e["verdict"].endswith("more private")]
    ties = [f"{e['family']} ({_pts(e['mean'])} points; {primary_verdict(e)})" for e in entries
            if e["verdict"] == "no difference shown"]
    unmeasured = [e["family"] for e in entries if e["verdict"] == NOT_MEASURED]
    text = (f"At a cost of {cost} points: " + "; ".join(told) + ". ") if told else \
        f"No family is told apart from {ref} at a cost of {cost} points. "
    if ties:
        text += f"Not told apart from {ref}: " + "; ".join(ties) + ". "
    if unmeasured:
        text += (f"Not measured (fewer than 2 seeds with both families inside a measured bracket): "
                 f"{', '.join(unmeasured)}.")
    return text.strip()


def primary_blocks(results: dict) -> list[tuple]:
    """The section; [] without primary comparisons (ReportConfig.primary_cost unset)."""
    entries = results.get("primary") or []
    if not entries:
        return []
    e0 = entries[0]
    axis, ref, tests = AXIS[e0["utility"]], e0["reference"], e0["holm_tests"]
    attack = ("each target's worst case over the attack suite (highest attack Acc@1 per target and seed)"
              if results.get("adaptive") else "attack Acc@1")
    blocks = [("h2", f"Primary comparisons: each defense against {ref} at a cost of {100 * e0['cost']:.1f} points"),
              ("p", f"Fixed before the run (the config's rationale): one cost, {100 * e0['cost']:.1f} points of {axis} "
                    f"below the undefended target of the same seed, and every defense family compared with {ref} "
                    f"there. Per seed, both families' curves (settings plus the undefended target, attack Acc@1 made "
                    f"non-decreasing in {axis}) are read at that level only on a measured point or between two "
                    f"measured points at most {100 * e0['max_gap']:.1f} points apart; a seed where either is not "
                    f"read is left out (and listed). The metric is {attack}; the difference is family - {ref} "
                    f"(negative: the family leaks less). Verdict: two-sided paired t test, p adjusted with Holm's "
                    f"method over the {tests} comparisons of this table alone (the primary family), significant "
                    "below 0.05; the 95 % t interval is not adjusted. Beside 'no difference shown': the smallest "
                    f"true difference the same seeds would detect with 80 % power at Holm's first step "
                    f"(0.05/{tests}), the level a lone finding must pass."),
              primary_table(entries),
              ("p", primary_sentence(entries))]
    without = results.get("primary_without_post_hoc")
    if without is not None:
        by_family = {w["family"]: w["verdict"] for w in without}
        changed = [f"{e['family']}: {e['verdict']} with them, {by_family.get(e['family'], 'family absent')} without"
                   for e in entries if by_family.get(e["family"]) != e["verdict"]]
        blocks.append(("p", "Without the grid points added after attack results were seen (their own Holm "
                            "adjustment): " + ("; ".join(changed) + "." if changed else "no verdict changes.")))
    return blocks
