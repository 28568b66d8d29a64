"""Paired statistics of the study's claims and the verdict computed from them (PAPER.md section 9).

Each seed retrains every target on the same data and re-seeds the attack, so two targets are compared
paired by seed: d_s = metric(entry, seed s) - metric(baseline, seed s). Over the n seeds where both
are known: mean, sample standard deviation and the 95 % t interval mean +- t(0.975, n - 1) * sd / sqrt(n).

Claims come from the targets themselves: the baseline of an entry with alpha != 0 is the alpha = 0
entry with the same overrides (`set`), and entries with a defense (set.defense.kind) take no part. So
with the paper's three alphas there are two claims, C1 (alpha > 0: paper says attack Acc@1 goes up) and
C2 (alpha < 0: it goes down); a config that also carries, say, a no-weight-decay arm gets the pair of
claims of that arm as well. A claim is "reproduced" when the Acc@1 interval excludes 0 in the paper's
direction, "reversed" when it excludes 0 the other way, "inconclusive" otherwise (always with 1 seed).
"""
from __future__ import annotations

import math
import statistics

from ..config import flatten_overrides

VERDICT_METRIC = "attack_acc1"
# results.json row keys whose paired differences the report shows next to the verdict metric
PAIRED_METRICS = ("attack_acc1", "attack_acc1_initial", "attack_acc5", "attack_acc_category", "delta_eval", "fid",
                  "kes_test", "test_acc")
CONFIDENCE = 0.95

# two-sided 95 % critical values t(0.975, df) for df = 1..30 (used when scipy is missing)
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def t_critical(df: int) -> float:
    """t(0.975, df): the multiplier of the standard error in a two-sided 95 % interval."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    try:
        from scipy.stats import t
    except ImportError:
        if df <= len(_T975):
            return _T975[df - 1]
        z = 1.959964  # Cornish-Fisher expansion around the normal quantile; error < 1e-4 for df > 30
        return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def paired_interval(diffs: list[float]) -> dict:
    """{"n", "mean", "sd", "ci"}: the t interval of the mean of paired differences; sd and ci are None
    for fewer than 2 differences (no spread can be estimated), mean is None for none."""
    vals = [float(d) for d in diffs]
    if any(not math.isfinite(v) for v in vals):
        raise ValueError(f"paired differences must be finite numbers, got {vals}")
    n = len(vals)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci": None}
    mean = statistics.fmean(vals)
    if n == 1:
        return {"n": 1, "mean": mean, "sd": None, "ci": None}
    sd = statistics.stdev(vals)
    half = t_critical(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci": [mean - half, mean + half]}


def verdict_of(ci: list[float] | None, direction: int, n: int) -> str:
    """"reproduced" / "reversed" / "inconclusive" from the interval and the paper's direction (+1: the
    metric should rise, -1: fall); "inconclusive (1 seed)" without an interval, "no data" without seeds."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    if n == 0:
        return "no data"
    if ci is None:
        return f"inconclusive ({n} seed)"
    lo, hi = ci
    if lo > 0 or hi < 0:
        return "reproduced" if (lo > 0) == (direction > 0) else "reversed"
    return "inconclusive"


def _as_dict(entry) -> dict:
    return entry.model_dump(mode="json") if hasattr(entry, "model_dump") else dict(entry)


def find_claims(targets) -> list[dict]:
    """[{"claim", "name", "alpha", "baseline", "baseline_alpha", "direction"}] from the study's target
    entries (TargetEntry objects or their dicts, as in results.json settings.experiment.targets).

    Claims are named after the paper's: C1 for positive alpha (leaks more), C2 for negative alpha (leaks
    less), numbered C1.1, C1.2, ... in config order when a sign has several entries; positive ones come
    first. An entry without an alpha = 0 partner of the same overrides gets no claim."""
    entries = [_as_dict(t) for t in targets]
    recipe = {e["name"]: flatten_overrides(e.get("set") or {}) for e in entries}  # nested or dotted alike
    plain = [e for e in entries if recipe[e["name"]].get("defense.kind", "none") == "none"]
    claims = []
    for number, sign in ((1, 1), (2, -1)):
        paired = []
        for e in plain:
            base = next((b for b in plain if b["alpha"] == 0 and recipe[b["name"]] == recipe[e["name"]]), None)
            if e["alpha"] * sign > 0 and base is not None:
                paired.append({"name": e["name"], "alpha": e["alpha"], "baseline": base["name"],
                               "baseline_alpha": 0.0, "direction": sign})
        for i, claim in enumerate(paired, 1):
            claims.append({"claim": f"C{number}" if len(paired) == 1 else f"C{number}.{i}", **claim})
    return claims


def paired_differences(rows: list[dict], name: str, baseline: str, key: str) -> tuple[list[int], list[float]]:
    """(seeds, metric(name) - metric(baseline)) over the seeds where both rows hold a number."""
    def by_seed(n):
        return {r["seed"]: r.get(key) for r in rows if r["name"] == n}

    mine, base = by_seed(name), by_seed(baseline)
    seeds = sorted(s for s in mine if s in base and mine[s] is not None and base[s] is not None)
    return seeds, [mine[s] - base[s] for s in seeds]


def claim_statistics(rows: list[dict], targets) -> list[dict]:
    """Every claim with its paired statistics per metric and the verdict (on attack Acc@1):
    claim dict + {"verdict", "metrics": {key: {"seeds", "diffs", "n", "mean", "sd", "ci"}}}."""
    out = []
    for claim in find_claims(targets):
        metrics = {}
        for key in PAIRED_METRICS:
            seeds, diffs = paired_differences(rows, claim["name"], claim["baseline"], key)
            if diffs or key == VERDICT_METRIC:
                metrics[key] = {"seeds": seeds, "diffs": diffs, **paired_interval(diffs)}
        main = metrics[VERDICT_METRIC]
        out.append({**claim, "metric": VERDICT_METRIC, "confidence": CONFIDENCE,
                    "verdict": verdict_of(main["ci"], claim["direction"], main["n"]), "metrics": metrics})
    return out
