"""The primary comparisons of a defense study (issue 29): every defense family against one reference family
at one cost fixed before the run, Holm-adjusted over these comparisons only.

Set by ReportConfig.primary_cost (e.g. 0.02: 2 points of validation accuracy below the undefended target of
the same seed) and primary_reference (default "negative LS"). Per seed s the level is the undefended
target's utility on s minus the cost (validation accuracy when every row has one, matched.utility_key);
each family's curve (matched.family_curves: its settings plus the undefended target, attack Acc@1 made
non-decreasing in utility) is read there only on a measured point or inside a bracket of measured points
at most ReportConfig.max_gap apart (matched.read_pair); a seed where either family is not read is left out
and listed. d_s = attack Acc@1 (family) - attack Acc@1 (reference): negative means the family leaks less.
With an attack suite the rows are each target's worst case (pipeline.study_statistics passes them).

Primary family, chosen here: every family of the targets (tradeoff.defense_of) other than the reference,
the undefended target, positive LS and the control families (plain hard-label models: controls.py, which
passes them in; they keep their own section and stay rows of the exploratory matched table). Over the
comparisons of this family that have a p (2 or more seeds read): mean, unadjusted 95 % t interval, two-sided
paired t p, Holm's adjustment over them alone (stats.holm_fields: p_holm, holm_tests, and the effect 80 %
power detects at Holm's first step, level 0.05 / holm_tests). Verdict from the Holm p at 0.05
(matched.matched_verdict): "FAMILY more private", "REFERENCE more private", "no difference shown", or
"not measured" with fewer than 2 seeds read. Every other cost and pair stays in the matched table, which
is then exploratory and unadjusted (matched.matched_comparison's `primary`). When some entry was added after
attack results were seen, the table is repeated without those entries ("primary_without_post_hoc").
"""
from __future__ import annotations

import math
from typing import Collection, Optional

from .matched import (LEVEL, NOT_A_DEFENSE, level_curves, matched_verdict, order_families, post_hoc_names,
                      read_pair)
from .stats import CONFIDENCE, POWER, holm_fields, paired_interval
from .tradeoff import defense_of

METRIC = "attack_acc1"


def primary_families(targets, reference: str, controls: Collection[str] = ()) -> list[str]:
    """The families compared with the reference (module doc), in the matched table's order."""
    fams = {defense_of(t) for t in targets} - set(NOT_A_DEFENSE) - set(controls) - {reference}
    return order_families(fams)


def primary_pairs(targets, report, controls: Collection[str] = ()) -> Optional[list[tuple[float, str, str]]]:
    """(cost, reference, family) of every primary comparison, for matched.matched_results' `primary`;
    None without report.primary_cost."""
    if report.primary_cost is None:
        return None
    return [(report.primary_cost, report.primary_reference, f)
            for f in primary_families(list(targets), report.primary_reference, controls)]


def primary_comparison(rows: list[dict], targets, cost: float, reference: str, max_gap: float,
                       controls: Collection[str] = (), metric: str = METRIC) -> list[dict]:
    """One entry per family of the primary family (module doc): the seeds read, both families' values,
    d_s = family - reference, paired_interval's statistics, Holm over this table, verdict."""
    targets = list(targets)
    utility, curves, base = level_curves(rows, targets, metric)
    out = []
    for fam in primary_families(targets, reference, controls):
        pair = read_pair(curves, base, fam, reference, cost, max_gap)
        out.append({"family": fam, "reference": reference, "cost": cost, "metric": metric, "utility": utility,
                    "max_gap": max_gap, "seeds": pair["seeds"], "seeds_total": len(base),
                    "unread": pair["unread_a"], "unread_reference": pair["unread_b"], "values": pair["a_values"],
                    "reference_values": pair["b_values"], "diffs": pair["diffs"], **paired_interval(pair["diffs"]),
                    "confidence": CONFIDENCE, "power": POWER})
    for e, fields in zip(out, holm_fields(out)):  # p_holm, holm_tests, detectable_effect_holm
        e.update(**fields, level=LEVEL, verdict=matched_verdict(fields["p_holm"], e["mean"], e["n"], e["family"],
                                                                reference))
    return out


def primary_results(rows: list[dict], targets, report, controls: Collection[str] = ()) -> dict:
    """{"primary": table} ({} without report.primary_cost) and, when some entry was added after attack
    results were seen, "primary_without_post_hoc" (the same table without those entries)."""
    if report.primary_cost is None:
        return {}
    targets = list(targets)
    args = (report.primary_cost, report.primary_reference, report.max_gap, controls)
    out = {"primary": primary_comparison(rows, targets, *args)}
    late = post_hoc_names(targets)
    if late:
        out["primary_without_post_hoc"] = primary_comparison(rows, [t for t in targets if t.name not in late], *args)
    return out


def pooled_sd(entries: list[dict]) -> dict:
    """The paired spread of several comparisons pooled by their degrees of freedom: sqrt(sum (n_i - 1) sd_i^2
    / sum (n_i - 1)) over the entries with an sd (2 or more seeds read). {"sd", "df", "comparisons"}; sd None
    when no entry has one. The spread a power computation for a new study starts from (seeds_for_holm)."""
    used = [e for e in entries if e.get("sd") is not None and e["n"] >= 2]
    df = sum(e["n"] - 1 for e in used)
    sd = math.sqrt(sum((e["n"] - 1) * e["sd"] ** 2 for e in used) / df) if df else None
    return {"sd": sd, "df": df, "comparisons": len(used)}

