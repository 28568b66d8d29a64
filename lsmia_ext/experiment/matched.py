"""Defenses compared at matched utility, paired by seed (PAPER.md section 9).

A defense is a curve, not a point: each of its settings trades utility for attack accuracy. Per seed s,
a family's curve is its own targets plus the undefended target (alpha 0, no defense: the "no cost" end
every family shares), as points (utility, attack Acc@1) sorted by utility, with the attack accuracy made
non-decreasing in utility (pool-adjacent-violators: a stronger setting that happens to leak more on one
seed is averaged with its neighbour, so the curve is a monotone trade-off).

Measured, not interpolated: the curve is read at utility x only on a measured point of that seed or
between two adjacent measured points of that seed at most `max_gap` apart (default MAX_GAP, 1.5 points
of accuracy), linearly; elsewhere (a wider gap, or outside the measured range) the family is "not
measured" on that seed. The utility axis is the validation accuracy (row key "val_acc") when every row
involved has one, else the test accuracy (results of studies without a validation split); each entry
records which ("utility").

Utility levels are costs: level_s = utility of the undefended target on seed s - drop. At each drop, the
attack accuracy of families A and B at that level gives per-seed differences A - B over the seeds where
both are read, their mean and unadjusted 95 % t interval (stats.paired_interval), the two-sided paired t
p-value and its Holm adjustment across the whole table (every pair at every drop: the family of tests
the table's verdicts are drawn from), and the effect 80 % power would detect at Holm's first step
(stats.detectable_effect_holm) beside the unadjusted one. Verdict: A (or B) more private when the
Holm-adjusted p is below 0.05 (the sign of the mean says which), "no difference shown" otherwise, "not measured" with fewer than
2 seeds read. Control families (TargetEntry.family) are families like any other here.

With a primary comparison set (ReportConfig.primary_cost; primary.py: each defense family against one
reference family at one cost, Holm over those alone) this table is exploratory: it leaves the primary pairs
out and reads its verdicts at the unadjusted p, labelled so in the report.
"""
from __future__ import annotations

from typing import Collection, Optional

from .stats import CONFIDENCE, HOLM_LEVEL, POWER, holm_fields, paired_interval
from .tradeoff import defense_of

DROPS = (0.005, 0.01, 0.02, 0.04)  # default costs in accuracy (fractions) below the undefended target
MAX_GAP = 0.015  # widest bracket of measured points a curve is read inside (a fraction of accuracy)
LEVEL = HOLM_LEVEL  # family-wise error rate of the matched table (Holm)
NO_DEFENSE = "none"
NOT_A_DEFENSE = {NO_DEFENSE, "positive LS"}
_TOL = 1e-9  # accuracies are ratios of counts: equal points and gaps are compared to this tolerance
NOT_MEASURED = "not measured"


def isotonic(values: list[float]) -> list[float]:
    """Least-squares non-decreasing fit of a sequence (pool adjacent violators, equal weights)."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    return [s / c for s, c in blocks for _ in range(int(c))]


def monotone_curve(points: list[tuple[float, float]], monotone: bool = True) -> list[tuple[float, float]]:
    """(utility, metric) points -> sorted by utility (equal utilities merged, metric averaged), the metric
    made non-decreasing in utility (unless monotone is False)."""
    if not points:
        raise ValueError("a curve needs at least one (utility, attack acc) point")
    merged: dict[float, list[float]] = {}
    for x, y in points:
        merged.setdefault(float(x), []).append(float(y))
    xs = sorted(merged)
    ys = [sum(merged[x]) / len(merged[x]) for x in xs]
    return list(zip(xs, isotonic(ys) if monotone else ys))


def interpolate(curve: list[tuple[float, float]], x: float, max_gap: Optional[float] = None) -> Optional[float]:
    """The curve's value at utility x: on a point, or linear between the two adjacent points around x when
    they are at most max_gap apart (any distance when max_gap is None); None outside the curve's range or
    inside a wider gap (not measured there)."""
    if not curve or x < curve[0][0] - _TOL or x > curve[-1][0] + _TOL:
        return None
    for x0, y0 in curve:
        if abs(x - x0) <= _TOL:
            return y0
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if x0 < x < x1:
            if max_gap is not None and x1 - x0 > max_gap + _TOL:
                return None
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def utility_key(rows: list[dict], names) -> str:
    """"val_acc" when every row of these target names has a validation accuracy, else "test_acc"."""
    names = set(names)
    mine = [r for r in rows if r["name"] in names]
    return "val_acc" if mine and all(r.get("val_acc") is not None for r in mine) else "test_acc"


def undefended(targets) -> set[str]:
    return {t.name for t in targets if defense_of(t) == NO_DEFENSE}


def family_curves(rows: list[dict], targets, metric: str = "attack_acc1", utility: str = "test_acc",
                  monotone: bool = True) -> dict[str, dict[int, list]]:
    """{family: {seed: curve}} for every family (defenses and control families; not positive LS), each
    including the undefended target, over (utility, metric) points (module doc)."""
    family = {t.name: defense_of(t) for t in targets}
    points: dict[str, dict[int, list]] = {}
    for r in rows:
        fam = family.get(r["name"])
        if fam is None or fam == "positive LS" or r.get(utility) is None or r.get(metric) is None:
            continue
        points.setdefault(fam, {}).setdefault(r["seed"], []).append((r[utility], r[metric]))
    base = points.pop(NO_DEFENSE, {})
    return {fam: {s: monotone_curve(pts + base.get(s, []), monotone) for s, pts in by_seed.items()}
            for fam, by_seed in points.items()}


def matched_verdict(p_holm: Optional[float], mean: Optional[float], n: int, a: str, b: str) -> str:
    """From the Holm-adjusted p of attack(A) - attack(B): who is more private at this utility, or that
    neither is shown; "not measured" with fewer than 2 seeds read."""
    if n < 2 or p_holm is None:
        return NOT_MEASURED
    if p_holm < LEVEL and mean != 0:
        return f"{a} more private" if mean < 0 else f"{b} more private"
    return "no difference shown"


def order_families(families) -> list[str]:
    """negative LS, MID, BiDO first (the order of the study's tables), then the others alphabetically."""
    families = list(families)  # read twice
    first = [f for f in ("negative LS", "MID", "BiDO") if f in families]
    return first + sorted(f for f in families if f not in first)


def level_curves(rows: list[dict], targets, metric: str = "attack_acc1") -> tuple[str, dict, dict[int, float]]:
    """(utility key, family_curves on that axis, {seed: the undefended target's utility}): what a reading at
    a cost below the undefended target needs (matched_comparison, primary.py)."""
    targets = list(targets)
    utility = utility_key(rows, [t.name for t in targets if defense_of(t) != "positive LS"])
    curves = family_curves(rows, targets, metric, utility)
    base = {r["seed"]: r[utility] for r in rows if r["name"] in undefended(targets) and r.get(utility) is not None}
    return utility, curves, base


def read_pair(curves: dict, base: dict[int, float], a: str, b: str, drop: float, max_gap: float) -> dict:
    """Families a and b per seed at the undefended utility minus `drop`, each read only inside a measured
    bracket (interpolate): {"seeds" (both read), "a_values", "b_values", "diffs" (a - b), "unread_a",
    "unread_b" (seeds where that family is not read)}."""
    seeds, va, vb, unread = [], [], [], {a: [], b: []}
    for s in sorted(base):
        ya = interpolate(curves.get(a, {}).get(s, []), base[s] - drop, max_gap)
        yb = interpolate(curves.get(b, {}).get(s, []), base[s] - drop, max_gap)
        for fam, y in ((a, ya), (b, yb)):
            if y is None:
                unread[fam].append(s)
        if ya is not None and yb is not None:
            seeds.append(s)
            va.append(ya)
            vb.append(yb)
    return {"seeds": seeds, "unread_a": unread[a], "unread_b": unread[b], "a_values": va, "b_values": vb,
            "diffs": [x - y for x, y in zip(va, vb)]}


def matched_comparison(rows: list[dict], targets, drops=DROPS, metric: str = "attack_acc1",
                       max_gap: float = MAX_GAP, primary: Optional[Collection[tuple]] = None) -> list[dict]:
    """Every pair of families at every drop: per-seed matched attack accuracies read inside measured
    brackets, paired differences (A - B), t interval, p and Holm-adjusted p, detectable effect and verdict.
    [] when fewer than two defense families are present.

    With `primary`, the primary comparisons as (cost, reference family, family) triples (primary.py, from
    ReportConfig.primary_cost; also when empty), the table is exploratory: those pairs at that cost are
    left out (they are Holm-adjusted over their own family in the primary table), every other entry
    carries "exploratory": True and its verdict is read at the unadjusted p (no Holm fields), so no Holm
    family mixes with the primary one."""
    utility, curves, base = level_curves(rows, targets, metric)
    fams = order_families(f for f in curves if f not in NOT_A_DEFENSE)
    out = []
    for drop in drops:
        for i, a in enumerate(fams):
            for b in fams[i + 1:]:
                if primary is not None and any(abs(drop - c) <= _TOL and {a, b} == {r, f} for c, r, f in primary):
                    continue
                pair = read_pair(curves, base, a, b, drop, max_gap)
                out.append({"drop": drop, "a": a, "b": b, "metric": metric, "utility": utility, "max_gap": max_gap,
                            "seeds": pair["seeds"], "seeds_total": len(base), "unread_a": pair["unread_a"],
                            "unread_b": pair["unread_b"], "a_values": pair["a_values"], "b_values": pair["b_values"],
                            "diffs": pair["diffs"], **paired_interval(pair["diffs"]),
                            "confidence": CONFIDENCE, "power": POWER})
    if primary is not None:
        for e in out:
            e.update(exploratory=True, level=LEVEL, verdict=matched_verdict(e["p"], e["mean"], e["n"], e["a"], e["b"]))
        return out
    for e, fields in zip(out, holm_fields(out)):  # p_holm, holm_tests, detectable_effect_holm (stats.py)
        e.update(**fields, level=LEVEL, verdict=matched_verdict(fields["p_holm"], e["mean"], e["n"], e["a"], e["b"]))
    return out


def post_hoc_names(targets) -> list[str]:
    return [t.name for t in targets if getattr(t, "added_after_attacks", False)]


def matched_results(rows: list[dict], targets, drops=DROPS, max_gap: float = MAX_GAP, post_hoc_drops=(),
                    primary: Optional[Collection[tuple]] = None) -> dict:
    """{"matched": table} and, when some entry was added after attack results were seen,
    "matched_without_post_hoc": the same table without those entries (and "post_hoc": their names); with
    post_hoc_drops (costs chosen after the table was read), "matched_post_hoc_costs": the table at those
    costs alone, with its own Holm adjustment (so it cannot change a verdict of the main table). With
    `primary` (the primary comparisons) every table is exploratory (matched_comparison)."""
    targets = list(targets)
    out = {"matched": matched_comparison(rows, targets, drops, max_gap=max_gap, primary=primary)}
    if post_hoc_drops:
        out["matched_post_hoc_costs"] = matched_comparison(rows, targets, post_hoc_drops, max_gap=max_gap,
                                                           primary=primary)
    late = post_hoc_names(targets)
    if late:
        out["post_hoc"] = late
        out["matched_without_post_hoc"] = matched_comparison(rows, [t for t in targets if t.name not in late], drops,
                                                             max_gap=max_gap, primary=primary)
    return out
