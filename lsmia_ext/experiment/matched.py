"""Defenses compared at matched utility, paired by seed (PAPER.md section 9).

A defense is a curve, not a point: each of its settings trades test accuracy for attack accuracy. Per
seed s, a family's curve is its own targets plus the undefended target (alpha 0, no defense: the
"no cost" end every family shares), as points (test acc, attack Acc@1) sorted by test accuracy, with the
attack accuracy made non-decreasing in test accuracy (pool-adjacent-violators: a stronger setting that
happens to leak more on one seed is averaged with its neighbour, so the curve is a monotone trade-off),
then read by linear interpolation; no extrapolation outside the seed's measured range.

Utility levels are costs: level_s = test acc of the undefended target on seed s - drop. At each drop, the
attack accuracy of families A and B at that level gives per-seed differences A - B, their mean and 95 %
t interval (stats.paired_interval), and the verdict: A more private when the interval lies below 0, B
when above, "no difference shown" when it contains 0; a seed counts only where both curves reach the
level.
"""
from __future__ import annotations

from typing import Optional

from .stats import CONFIDENCE, paired_interval
from .tradeoff import defense_of

DROPS = (0.005, 0.01, 0.02, 0.04)  # default costs in test accuracy (fractions) below the undefended target
NO_DEFENSE = "none"
NOT_A_DEFENSE = {NO_DEFENSE, "positive LS"}


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


def monotone_curve(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(test acc, attack) points -> sorted by test acc (equal test accs merged, attack averaged), attack
    made non-decreasing in test acc."""
    if not points:
        raise ValueError("a curve needs at least one (test acc, attack acc) point")
    merged: dict[float, list[float]] = {}
    for x, y in points:
        merged.setdefault(float(x), []).append(float(y))
    xs = sorted(merged)
    ys = isotonic([sum(merged[x]) / len(merged[x]) for x in xs])
    return list(zip(xs, ys))


def interpolate(curve: list[tuple[float, float]], x: float) -> Optional[float]:
    """The curve's value at test accuracy x (linear between its sorted points); None outside its range."""
    if not curve or x < curve[0][0] or x > curve[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return curve[0][1]  # a single point, x on it


def family_curves(rows: list[dict], targets, metric: str = "attack_acc1") -> dict[str, dict[int, list]]:
    """{family: {seed: monotone curve}} for every defense family, each including the undefended target."""
    family = {t.name: defense_of(t) for t in targets}
    points: dict[str, dict[int, list]] = {}
    for r in rows:
        fam = family.get(r["name"])
        if fam is None or fam == "positive LS" or r.get("test_acc") is None or r.get(metric) is None:
            continue
        points.setdefault(fam, {}).setdefault(r["seed"], []).append((r["test_acc"], r[metric]))
    base = points.pop(NO_DEFENSE, {})
    return {fam: {s: monotone_curve(pts + base.get(s, [])) for s, pts in by_seed.items()}
            for fam, by_seed in points.items()}


def matched_verdict(ci: Optional[list[float]], n: int, a: str, b: str) -> str:
    """From the interval of attack(A) - attack(B): who is more private at this utility, or that neither is shown."""
    if n == 0:
        return "not reached by both"
    if ci is None:
        return f"inconclusive ({n} seed)"
    if ci[1] < 0:
        return f"{a} more private"
    if ci[0] > 0:
        return f"{b} more private"
    return "no difference shown"


def _order(families) -> list[str]:
    first = [f for f in ("negative LS", "MID", "BiDO") if f in families]
    return first + sorted(f for f in families if f not in first)


def matched_comparison(rows: list[dict], targets, drops=DROPS, metric: str = "attack_acc1") -> list[dict]:
    """Every pair of defense families at every drop: per-seed matched attack accuracies, paired
    differences (A - B), t interval and verdict. [] when fewer than two defense families are present."""
    curves = family_curves(rows, targets, metric)
    names = {t.name for t in targets if defense_of(t) == NO_DEFENSE}
    base = {r["seed"]: r["test_acc"] for r in rows if r["name"] in names and r.get("test_acc") is not None}
    fams = _order(f for f in curves if f not in NOT_A_DEFENSE)
    out = []
    for drop in drops:
        for i, a in enumerate(fams):
            for b in fams[i + 1:]:
                seeds, va, vb = [], [], []
                for s in sorted(base):
                    ya = interpolate(curves[a].get(s, []), base[s] - drop)
                    yb = interpolate(curves[b].get(s, []), base[s] - drop)
                    if ya is not None and yb is not None:
                        seeds.append(s)
                        va.append(ya)
                        vb.append(yb)
                stats = paired_interval([x - y for x, y in zip(va, vb)])
                out.append({"drop": drop, "a": a, "b": b, "metric": metric, "seeds": seeds, "a_values": va,
                            "b_values": vb, "diffs": [x - y for x, y in zip(va, vb)], **stats,
                            "confidence": CONFIDENCE, "verdict": matched_verdict(stats["ci"], stats["n"], a, b)})
    return out
