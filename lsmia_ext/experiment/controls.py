"""Is negative LS more than a weaker model? Negative LS against control families at equal accuracy.

A control family is a family of plain hard-label entries (alpha 0, no defense) carrying a `family` label
("train less (epochs)", "narrower model"): models that are only less accurate. For every plain
negative-alpha entry E (no defense, no family) and every control family F, per seed s: x_s = E's utility
on seed s (validation accuracy when every row involved has one, else test accuracy; matched.utility_key),
y_s = F's curve (its entries plus the undefended target, attack Acc@1 made non-decreasing in utility as
in matched.py) read at x_s only on a measured point or inside a bracket of measured points at most
max_gap apart, and d_s = attack Acc@1(E, s) - y_s. Over the seeds where F is read: mean, 95 % t interval,
p and the detectable effect (stats.paired_interval). Verdict, like the claims' (from the unadjusted
interval): "negative LS more private than an equally accurate F model" when the interval lies below 0,
"F more private" when above, "no difference shown" when it holds 0, "not measured" with fewer than 2
seeds read. delta_eval and KES (test) are read the same way (without the monotone fit: their direction
differs) as secondary differences, without a verdict.
"""
from __future__ import annotations

from ..config import flatten_overrides
from .matched import MAX_GAP, NOT_MEASURED, family_curves, interpolate, matched_results, undefended, utility_key
from .primary import primary_pairs, primary_results
from .stats import CONFIDENCE, POWER, paired_interval
from .tradeoff import defense_of

METRIC = "attack_acc1"
SECONDARY = ("delta_eval", "kes_test")


def _no_defense(t) -> bool:
    return flatten_overrides(t.set).get("defense.kind", "none") == "none"


def control_families(targets) -> list[str]:
    """Labels of the families whose entries are all plain hard-label models (alpha 0, no defense)."""
    labelled = [t for t in targets if t.family]
    fams = list(dict.fromkeys(t.family for t in labelled))
    return [f for f in fams if all(t.alpha == 0 and _no_defense(t) for t in labelled if t.family == f)]


def negative_entries(targets) -> list:
    """Plain negative-LS entries: alpha < 0, no defense, no family label."""
    return [t for t in targets if t.alpha < 0 and _no_defense(t) and not t.family]


def control_verdict(ci, n: int, family: str) -> str:
    if n < 2 or ci is None:
        return NOT_MEASURED
    if ci[1] < 0:
        noun = family if family.endswith("model") else f"{family} model"  # "narrower model", "train less model"
        return f"negative LS more private than an equally accurate {noun}"
    if ci[0] > 0:
        return f"{family} more private"
    return "no difference shown"


def _read(rows, targets, entry: str, family: str, metric: str, utility: str, max_gap: float, monotone: bool) -> dict:
    """Per seed: E's utility x, E's metric, F's curve at x (inside a measured bracket); paired statistics."""
    curves = family_curves(rows, targets, metric, utility, monotone).get(family, {})
    mine = {r["seed"]: r for r in rows if r["name"] == entry and r.get(utility) is not None and r.get(metric) is not None}
    seeds, xs, ev, fv, unread = [], [], [], [], []
    for s in sorted(mine):
        y = interpolate(curves.get(s, []), mine[s][utility], max_gap)
        if y is None:
            unread.append(s)
            continue
        seeds.append(s)
        xs.append(mine[s][utility])
        ev.append(mine[s][metric])
        fv.append(y)
    diffs = [a - b for a, b in zip(ev, fv)]
    return {"seeds": seeds, "unread": unread, "x": xs, "entry_values": ev, "family_values": fv, "diffs": diffs,
            **paired_interval(diffs)}


def control_comparison(rows: list[dict], targets, max_gap: float = MAX_GAP) -> list[dict]:
    """Every plain negative-LS entry against every control family at the entry's own accuracy, per seed
    (module doc). [] when the study has no control family or no negative-LS entry."""
    targets = list(targets)
    out = []
    for entry in negative_entries(targets):
        for fam in control_families(targets):
            names = [entry.name, *undefended(targets), *(t.name for t in targets if defense_of(t) == fam)]
            utility = utility_key(rows, names)
            main = _read(rows, targets, entry.name, fam, METRIC, utility, max_gap, True)
            out.append({"entry": entry.name, "alpha": entry.alpha, "family": fam, "metric": METRIC,
                        "utility": utility, "max_gap": max_gap, **main, "confidence": CONFIDENCE, "power": POWER,
                        "verdict": control_verdict(main["ci"], main["n"], fam),
                        "secondary": {m: _read(rows, targets, entry.name, fam, m, utility, max_gap, False)
                                      for m in SECONDARY}})
    return out


def comparisons(rows: list[dict], targets, report) -> dict:
    """The results.json entries of the study's comparisons across targets: "matched" (and, with post-hoc
    grid points, "matched_without_post_hoc" and "post_hoc", with post-hoc costs "matched_post_hoc_costs";
    matched.matched_results) and "controls", with the costs and bracket width of the experiment's
    ReportConfig `report`; with report.primary_cost also "primary" (primary.py; the matched tables are then
    exploratory)."""
    controls = control_families(targets)
    primary = primary_pairs(targets, report, controls)  # None without a primary cost
    return {**matched_results(rows, targets, report.matched_drops, report.max_gap, report.post_hoc_drops, primary),
            "controls": control_comparison(rows, targets, report.max_gap),
            **primary_results(rows, targets, report, controls)}
