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

C2 is split in the paper's two halves: C2a "attack drop" (the verdict above, on attack Acc@1) and C2b
"small utility cost": the paired test-accuracy cost (baseline - entry), "reproduced" when its whole
interval lies below the paper's cost (PAPER_COST, CelebA: about 3.5 points), "reversed" (a larger cost
than the paper's) when it lies wholly above, "inconclusive" otherwise. With several negative alphas the
halves are C2.1a / C2.1b, C2.2a / C2.2b, ...

Power: beside an interval that holds 0, `detectable_effect` says how large a true mean difference the
same number of seeds would have found (two-sided paired t test at 5 %, 80 % power, at the observed
spread), from the noncentral t distribution; `seeds_needed` inverts it. `holm` adjusts a table of
p-values for multiplicity (matched.py uses it across the matched-utility table).

Power where a verdict is read after Holm: a Holm-adjusted verdict is read at a stricter level than 5 %, so
the effect it could detect is larger. Holm's first step tests the smallest p at HOLM_LEVEL / m (m tests),
its last at HOLM_LEVEL; which step a comparison meets depends on the other p-values, unknown before the
run. `detectable_effect_holm` gives the effect at the first step (HOLM_LEVEL / m, the level a comparison
must pass when nothing else in its family is found, hence the conservative figure); the unadjusted
`detectable_effect` (level HOLM_LEVEL, Holm's last step) stays beside it as the lower end. Every member of
a Holm family carries both (`add_holm`, matched.py). `seeds_for_holm` inverts it: the seeds a study of m
Holm-adjusted comparisons needs (experiment/primary.py's design, bench/primary_design.py).

Multiplicity: when a study tests several claims of one kind (C1.1, C1.2, ... several positive alphas or
training-set sizes; C2.1a, C2.2a, ... several negative ones), each such family's attack Acc@1 p-values are
Holm-adjusted (`p_holm`, `holm_tests`, `detectable_effect_holm`) and `verdict_holm` is the verdict that survives it at 5 %
(inconclusive when the adjusted p is not below 0.05). The interval and `verdict` stay unadjusted; a single
claim of its kind (the default study's C1, C2a) has no adjustment. C2b (a cost against a threshold) is
not adjusted.
"""
from __future__ import annotations

import math
import statistics
from typing import Optional

from ..config import flatten_overrides
from ..errors import UserInputError

VERDICT_METRIC = "attack_acc1"
# results.json row keys whose paired differences the report shows next to the verdict metric
PAIRED_METRICS = ("attack_acc1", "attack_acc1_initial", "attack_acc5", "attack_acc_category", "delta_eval", "fid",
                  "kes_test", "test_acc", "val_acc")
CONFIDENCE = 0.95
POWER = 0.8
# C2b: the paper's utility cost of negative LS, in test accuracy (a fraction, like the rows' test_acc)
PAPER_COST = 0.035
PAPER_COST_SOURCE = "paper, CelebA: negative LS about 3.5 points of test accuracy under hard labels"
COST_METRIC = "test_acc_cost"  # baseline test_acc - entry test_acc, per seed

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
    """{"n", "mean", "sd", "ci", "p", "detectable_effect"}: the t interval of the mean of paired
    differences, the two-sided p-value of "mean 0" and the effect 80 % power would find (same unit as the
    differences); all but n and mean are None for fewer than 2 differences (no spread can be estimated),
    mean is None for none."""
    vals = [float(d) for d in diffs]
    if any(not math.isfinite(v) for v in vals):
        raise ValueError(f"paired differences must be finite numbers, got {vals}")
    n = len(vals)
    none = {"sd": None, "ci": None, "p": None, "detectable_effect": None}
    if n == 0:
        return {"n": 0, "mean": None, **none}
    mean = statistics.fmean(vals)
    if n == 1:
        return {"n": 1, "mean": mean, **none}
    sd = statistics.stdev(vals)
    half = t_critical(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci": [mean - half, mean + half], "p": paired_p_value(mean, sd, n),
            "detectable_effect": detectable_effect(sd, n)}


def paired_p_value(mean: float, sd: float, n: int) -> float:
    """Two-sided p-value of the paired t test of "true mean difference 0" (n - 1 degrees of freedom);
    with no spread (sd 0) it is 0 for a non-zero mean and 1 for a zero one."""
    from scipy.stats import t

    if n < 2:
        raise UserInputError(f"a paired t test needs at least 2 differences, got n = {n}")
    if sd == 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def _power(effect: float, sd: float, n: int, confidence: float) -> float:
    """Power of the two-sided paired t test at level 1 - confidence when the true mean is `effect`:
    P(|T| > t_crit), T noncentral t with n - 1 degrees of freedom and noncentrality effect sqrt(n) / sd."""
    from scipy.stats import nct, t

    df, nc = n - 1, effect * math.sqrt(n) / sd
    crit = float(t.ppf(0.5 + confidence / 2, df))
    lower = float(nct.cdf(-crit, df, nc))  # scipy returns nan far in the tail, where it is 0
    return float(nct.sf(crit, df, nc)) + (lower if math.isfinite(lower) else 0.0)


def _check_power_args(sd: float, power: float, confidence: float) -> None:
    if not (isinstance(sd, (int, float)) and math.isfinite(sd) and sd >= 0):
        raise UserInputError(f"sd must be a finite number >= 0, got {sd!r}")
    if not 0 < confidence < 1 or not 1 - confidence < power < 1:
        raise UserInputError(f"need 0 < confidence < 1 and 1 - confidence < power < 1, got confidence "
                             f"{confidence!r}, power {power!r}")


def detectable_effect(sd: Optional[float], n: int, power: float = POWER,
                      confidence: float = CONFIDENCE) -> Optional[float]:
    """The smallest true paired mean difference (same unit as sd) that a two-sided paired t test with n
    differences at level 1 - confidence finds with probability `power`, if the differences spread like
    sd. Exact, from the noncentral t; close to the usual approximation
    (t(1 - a/2, n - 1) + t(power, n - 1)) * sd / sqrt(n), which it exceeds by about 1 % at n = 5 and
    16 % at n = 2. None without a spread (sd None or n < 2); 0 when sd is 0."""
    if sd is None or n < 2:
        return None
    _check_power_args(sd, power, confidence)
    if sd == 0:
        return 0.0
    from scipy.optimize import brentq
    from scipy.stats import t

    df = n - 1
    guess = (t.ppf(0.5 + confidence / 2, df) + t.ppf(power, df)) * sd / math.sqrt(n)
    hi = guess
    while _power(hi, sd, n, confidence) < power:
        hi *= 2
    return float(brentq(lambda d: _power(d, sd, n, confidence) - power, 0.0, hi, xtol=1e-12 * hi, rtol=1e-10))


def seeds_needed(sd: float, effect: float, power: float = POWER, confidence: float = CONFIDENCE,
                 max_n: int = 100_000) -> int:
    """The fewest paired seeds (at least 2) whose detectable effect at spread sd is at most `effect`."""
    _check_power_args(sd, power, confidence)
    if not (isinstance(effect, (int, float)) and math.isfinite(effect) and effect > 0):
        raise UserInputError(f"effect must be a finite number > 0, got {effect!r}")
    if detectable_effect(sd, max_n, power, confidence) > effect:
        raise UserInputError(f"more than {max_n} seeds would be needed to detect {effect!r} at sd {sd!r}")
    lo, hi = 1, 2  # detectable(lo) > effect (or lo = 1, which has none), detectable(hi) <= effect
    while detectable_effect(sd, hi, power, confidence) > effect:
        lo, hi = hi, min(2 * hi, max_n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if detectable_effect(sd, mid, power, confidence) <= effect else (mid, hi)
    return hi


def holm(pvalues: list[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjustment of a family of p-values (None entries take no part and stay None):
    sorted ascending, the i-th smallest (i from 0) becomes max over j <= i of min(1, (m - j) p_(j))."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    if any(not 0 <= pvalues[i] <= 1 for i in idx):
        raise UserInputError(f"p-values must lie in [0, 1], got {pvalues}")
    out: list[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (len(idx) - rank) * pvalues[i]))
        out[i] = running
    return out


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
    first. An entry without an alpha = 0 partner of the same overrides gets no claim; entries with a
    defense or a family label (control families, tradeoff.defense_of) take no part."""
    entries = [_as_dict(t) for t in targets]
    recipe = {e["name"]: flatten_overrides(e.get("set") or {}) for e in entries}  # nested or dotted alike
    plain = [e for e in entries if recipe[e["name"]].get("defense.kind", "none") == "none" and not e.get("family")]
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


def cost_verdict(ci: Optional[list[float]], n: int, threshold: float = PAPER_COST) -> str:
    """C2b: "reproduced" when the whole interval of the utility cost lies below the paper's cost,
    "reversed" (larger than the paper's) when wholly above, "inconclusive" otherwise."""
    if n == 0:
        return "no data"
    if ci is None:
        return f"inconclusive ({n} seed)"
    return "reproduced" if ci[1] < threshold else "reversed" if ci[0] > threshold else "inconclusive"


def _cost_claim(rows: list[dict], claim: dict) -> dict:
    """C2b of a negative-alpha claim: the paired test-accuracy cost (baseline - entry) against PAPER_COST."""
    seeds, diffs = paired_differences(rows, claim["name"], claim["baseline"], "test_acc")
    stat = {"seeds": seeds, "diffs": [-d for d in diffs], **paired_interval([-d for d in diffs])}
    return {**claim, "claim": claim["claim"] + "b", "part": "small utility cost", "metric": COST_METRIC,
            "confidence": CONFIDENCE, "power": POWER, "threshold": PAPER_COST, "threshold_source": PAPER_COST_SOURCE,
            "verdict": cost_verdict(stat["ci"], stat["n"]), "detectable_effect": stat["detectable_effect"],
            "metrics": {COST_METRIC: stat}}


def claim_statistics(rows: list[dict], targets) -> list[dict]:
    """Every claim with its paired statistics per metric and the verdict (on attack Acc@1):
    claim dict + {"verdict", "detectable_effect", "metrics": {key: {"seeds", "diffs", "n", "mean", "sd",
    "ci", "p", "detectable_effect"}}}; a negative-alpha claim comes as its two halves (module doc), the
    attack drop ("C2a", part "attack drop", as above) and the cost ("C2b", part "small utility cost",
    metric COST_METRIC, with "threshold")."""
    out = []
    for claim in find_claims(targets):
        metrics = {}
        for key in PAIRED_METRICS:
            seeds, diffs = paired_differences(rows, claim["name"], claim["baseline"], key)
            if diffs or key == VERDICT_METRIC:
                metrics[key] = {"seeds": seeds, "diffs": diffs, **paired_interval(diffs)}
        main = metrics[VERDICT_METRIC]
        entry = {**claim, "metric": VERDICT_METRIC, "confidence": CONFIDENCE, "power": POWER,
                 "verdict": verdict_of(main["ci"], claim["direction"], main["n"]),
                 "detectable_effect": main["detectable_effect"], "metrics": metrics}
        if claim["direction"] > 0:
            out.append(entry)
        else:
            out += [{**entry, "claim": claim["claim"] + "a", "part": "attack drop"}, _cost_claim(rows, claim)]
    return with_holm(out)


HOLM_LEVEL = 0.05


def holm_verdict(verdict: str, p_holm: Optional[float]) -> str:
    """The verdict that survives a Holm adjustment at HOLM_LEVEL."""
    if verdict in ("reproduced", "reversed") and (p_holm is None or p_holm >= HOLM_LEVEL):
        return "inconclusive"
    return verdict


def with_holm(claims: list[dict]) -> list[dict]:
    """Adds p_holm, holm_tests and verdict_holm to every attack claim of a family of several (module doc)."""
    families: dict[tuple, list[dict]] = {}
    for c in claims:
        if c.get("metric", VERDICT_METRIC) == VERDICT_METRIC:
            families.setdefault((c["direction"],), []).append(c)
    for family in families.values():
        if len(family) > 1:
            add_holm(family, [c["metrics"][VERDICT_METRIC] for c in family])
    return claims


def detectable_effect_holm(sd: Optional[float], n: int, tests: int, power: float = POWER,
                           level: float = HOLM_LEVEL) -> Optional[float]:
    """The detectable effect (detectable_effect) at Holm's first step of a family of `tests` p-values: a
    two-sided test at level / tests (module doc). None without a spread or without a test."""
    if isinstance(tests, bool) or not isinstance(tests, int) or tests < 0:
        raise UserInputError(f"tests must be a whole number >= 0, got {tests!r}")
    if tests == 0:
        return None
    return detectable_effect(sd, n, power, confidence=1 - level / tests)


def seeds_for_holm(sd: float, effect: float, tests: int, power: float = POWER, level: float = HOLM_LEVEL) -> int:
    """The fewest paired seeds that detect a true mean difference `effect` with probability `power` at
    Holm's first step of a family of `tests` comparisons (a two-sided paired t test at level / tests), if
    the differences spread like sd: seeds_needed at that level; the inverse of detectable_effect_holm.

    The number to fix before a study whose verdicts are Holm-adjusted (experiment/primary.py), e.g. a 10-point
    difference at the 5.15-point spread of docs/defenses' negative-LS comparisons, 5 primary comparisons:
    seeds_for_holm(0.0515, 0.10, 5) == 7 (bench/primary_design.py)."""
    if isinstance(tests, bool) or not isinstance(tests, int) or tests < 1:
        raise UserInputError(f"tests must be a whole number >= 1 (the comparisons of the Holm family), got {tests!r}")
    return seeds_needed(sd, effect, power, confidence=1 - level / tests)


def holm_fields(stats: list[dict]) -> list[dict]:
    """Per member of a family, from its paired statistics ("p", "sd", "n": paired_interval's dict):
    {"p_holm" (Holm over the family's p-values), "holm_tests", "detectable_effect_holm" (at the first
    Holm step)}."""
    adjusted = holm([s["p"] for s in stats])
    tests = sum(p is not None for p in adjusted)
    return [{"p_holm": p_adj, "holm_tests": tests,
             "detectable_effect_holm": detectable_effect_holm(stat["sd"], stat["n"], tests)}
            for stat, p_adj in zip(stats, adjusted)]


def add_holm(family: list[dict], stats: list[dict]) -> None:
    """Sets holm_fields and verdict_holm on each member (a dict with "verdict"); stats[i] holds member i's
    paired statistics."""
    for member, fields in zip(family, holm_fields(stats)):
        member.update(**fields, verdict_holm=holm_verdict(member["verdict"], fields["p_holm"]))
