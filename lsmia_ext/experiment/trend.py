"""The dose-response test of C1 ("positive LS leaks more"): per seed, the least-squares slope of attack
Acc@1 over alpha >= 0 within one recipe; the slopes paired over seeds (issue 22).

A recipe is a group of plain entries (no defense, no family label: as stats.find_claims) with identical
overrides (`set`, e.g. a smaller data.train_per_class). Its entries with alpha >= 0 form a trend when they
hold an alpha = 0 entry and at least MIN_ALPHAS distinct alphas (with two, the slope is C1's single
difference again). On every seed where each of those entries has an Acc@1, the slope is
  b_s = sum_i (a_i - mean a) (y_is - mean y_s) / sum_i (a_i - mean a)^2
in Acc@1 (a fraction) per unit alpha. Over the seeds: mean, sd, 95 % t interval, p and the slope 80 %
power would detect (stats.paired_interval). Verdict as the claims': "reproduced" when the interval lies
above 0 (more smoothing, more leakage), "reversed" below, "inconclusive" otherwise; with several recipes
their p-values are also Holm-adjusted (p_holm, verdict_holm, detectable_effect_holm: stats.py). Seeds missing a value
for some entry are listed as incomplete and take no part (a slope over fewer alphas is another statistic).

The slope weighs the doses unevenly (`slope_weights`): over alpha 0, 0.05, 0.1, 0.2 it is almost the
0-vs-0.2 contrast and nearly blind to 0.05 and 0.1. Beside it, "contrast": the dose contrast of the question
"does any positive alpha leak more than 0?", per seed the mean Acc@1 over the positive alphas minus Acc@1 at
alpha 0, with the same paired statistics and verdict (Holm across recipes as the slope). It was added after
C1's results were read (issue 30): for C1 it is a post-hoc analysis, and its report says so.
"""
from __future__ import annotations

import statistics

from ..config import flatten_overrides
from .stats import CONFIDENCE, POWER, VERDICT_METRIC, _as_dict, add_holm, paired_interval, verdict_of

MIN_ALPHAS = 3
REPORT_STEP = 0.1  # the report shows slopes in Acc@1 points per +0.1 alpha (the paper's alpha)


def least_squares_slope(xs: list[float], ys: list[float]) -> float:
    """The slope of the least-squares line through (xs, ys); needs two distinct xs."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError(f"a slope needs as many ys as xs and two distinct xs, got xs {xs}, ys {ys}")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def recipe_label(recipe: dict) -> str:
    """The overrides that set a recipe apart, in words ("experiment recipe" for none)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(recipe.items())) or "experiment recipe"


def trend_groups(targets) -> list[dict]:
    """[{"recipe", "label", "entries", "alphas"}] per recipe with a trend (module doc), in config order;
    entries sorted by alpha."""
    entries = [_as_dict(t) for t in targets]
    groups: dict[str, dict] = {}
    for e in entries:
        recipe = flatten_overrides(e.get("set") or {})
        if recipe.get("defense.kind", "none") != "none" or e.get("family") or e["alpha"] < 0:
            continue
        group = groups.setdefault(repr(sorted(recipe.items())), {"recipe": recipe, "label": recipe_label(recipe),
                                                                  "entries": [], "alphas": []})
        group["entries"].append(e["name"])
        group["alphas"].append(float(e["alpha"]))
    out = []
    for g in groups.values():
        if 0.0 in g["alphas"] and len(set(g["alphas"])) >= MIN_ALPHAS:
            order = sorted(range(len(g["alphas"])), key=lambda i: g["alphas"][i])
            out.append({**g, "entries": [g["entries"][i] for i in order], "alphas": [g["alphas"][i] for i in order]})
    return out


def trend_statistics(rows: list[dict], targets, metric: str = VERDICT_METRIC) -> list[dict]:
    """Every recipe's trend: group dict + {"metric", "seeds", "slopes", "incomplete_seeds", "n", "mean",
    "sd", "ci", "p", "detectable_effect", "confidence", "power", "verdict", "slope_weights", "contrast"}; slopes in
    metric per unit alpha; "contrast" holds the dose contrast's paired statistics and verdict (module doc).
    [] when no recipe has an alpha-0 entry and MIN_ALPHAS distinct alphas >= 0."""
    out = []
    for g in trend_groups(targets):
        value = {(r["name"], r["seed"]): r.get(metric) for r in rows if r["name"] in g["entries"]}
        seeds, slopes, contrasts, incomplete = [], [], [], []
        for seed in sorted({s for _, s in value}):
            ys = [value.get((name, seed)) for name in g["entries"]]
            if any(y is None for y in ys):
                incomplete.append(seed)
                continue
            seeds.append(seed)
            slopes.append(least_squares_slope(g["alphas"], ys))
            contrasts.append(dose_contrast(g["alphas"], ys))
        stat, contrast = paired_interval(slopes), paired_interval(contrasts)
        out.append({**g, "metric": metric, "seeds": seeds, "slopes": slopes, "incomplete_seeds": incomplete, **stat,
                    "confidence": CONFIDENCE, "power": POWER, "verdict": verdict_of(stat["ci"], 1, stat["n"]),
                    "slope_weights": slope_weights(g["alphas"]),
                    "contrast": {"seeds": seeds, "diffs": contrasts, **contrast,
                                 "verdict": verdict_of(contrast["ci"], 1, contrast["n"])}})
    if len(out) > 1:  # several recipes: Holm across their slopes (as for a family of claims), and their contrasts
        add_holm(out, out)
        add_holm([t["contrast"] for t in out], [t["contrast"] for t in out])
    return out


def slope_weights(alphas: list[float]) -> list[float]:
    """w_i with slope = sum_i w_i y_i: (a_i - mean a) / sum_j (a_j - mean a)^2, per unit alpha; they show which
    doses the slope reads (over 0, 0.05, 0.1, 0.2: -4.0, -1.7, +0.6, +5.1, almost the 0-vs-0.2 contrast)."""
    mean = statistics.fmean(alphas)
    ss = sum((a - mean) ** 2 for a in alphas)
    return [(a - mean) / ss for a in alphas]


def dose_contrast(alphas: list[float], ys: list[float]) -> float:
    """Mean metric over the positive alphas minus the metric at alpha 0 (one seed): "any positive alpha vs 0",
    every dose weighed alike."""
    positive = [y for a, y in zip(alphas, ys) if a > 0]
    return statistics.fmean(positive) - next(y for a, y in zip(alphas, ys) if a == 0)
