"""Report blocks of the primary comparisons (primary.py): one table (family, cost read, seeds read, paired
difference to the reference, interval, p, Holm p, verdict with the effect detectable at Holm's first step),
the verdicts in words, and the frontier plot (attack Acc@1 over the utility axis, per-seed points and each
family's mean curve)."""
from __future__ import annotations

import statistics
from pathlib import Path

from ..runio import save_figure
from .claims_report import holm_level, with_power
from .matched import NOT_MEASURED
from .matched_report import AXIS, _ci, _mean, _p, _pts
from .tradeoff import defense_of


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


def frontier(rows: list[dict], targets, utility: str = "val_acc") -> dict:
    """Per defense family (the undefended target is family "none"): its per-seed points (utility, attack Acc@1)
    and its mean curve, one point per entry (means over that entry's seeds), sorted by utility. The rows are
    the ones the primary table reads (each target's worst case with an attack suite)."""
    family = {t.name: defense_of(t) for t in targets}
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["name"] for r in rows if r["name"] in family):
        mine = [r for r in rows if r["name"] == name and r.get(utility) is not None and r.get("attack_acc1") is not None]
        if not mine:
            continue
        f = out.setdefault(family[name], {"points": [], "curve": []})
        f["points"] += [(r[utility], r["attack_acc1"]) for r in mine]
        f["curve"].append((statistics.fmean(r[utility] for r in mine), statistics.fmean(r["attack_acc1"] for r in mine)))
    for f in out.values():
        f["curve"].sort()
    return out


def plot_frontier(curves: dict, axis: str, attack: str, path: Path, level: float | None = None) -> Path:
    """Attack Acc@1 (y) over the utility axis (x): small translucent points per seed, a line through each
    family's mean points, the undefended target as a black star; `level`: the primary cost's utility level
    (mean over seeds), a dotted vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (family, f) in enumerate(curves.items()):
        color = "black" if family == "none" else f"C{i % 10}"
        ax.scatter([100 * x for x, _ in f["points"]], [100 * y for _, y in f["points"]], s=9, alpha=0.3, color=color)
        ax.plot([100 * x for x, _ in f["curve"]], [100 * y for _, y in f["curve"]], color=color,
                marker="*" if family == "none" else "o", markersize=11 if family == "none" else 4,
                ls="none" if family == "none" else "-", label="undefended" if family == "none" else family)
    if level is not None:
        ax.axvline(100 * level, ls=":", color="grey", lw=1, label="primary cost (mean level)")
    ax.set_xlabel(f"target {axis} (%)")
    ax.set_ylabel(f"{attack} (%)  (lower = more private)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(path, fig)


def _frontier_block(out: Path, rows: list[dict], targets, e0: dict, worst: bool) -> list[tuple]:
    curves = frontier(rows, targets, e0["utility"])
    if len(curves) < 2:
        return []
    base = [x for x, _ in curves.get("none", {}).get("points", [])]
    level = statistics.fmean(base) - e0["cost"] if base else None
    attack = "worst-case attack Acc@1" if worst else "attack Acc@1"
    plot_frontier(curves, AXIS[e0["utility"]], attack, Path(out) / "plot_frontier.png", level)
    return [("img", "plot_frontier.png", f"{attack} over {AXIS[e0['utility']]}: one small point per target and "
                                         "seed, each family's mean curve through its settings, the undefended "
                                         "target as a star, the primary cost's level dotted")]


def primary_blocks(results: dict, out: Path | None = None, rows: list[dict] | None = None, targets=None) -> list[tuple]:
    """The section; [] without primary comparisons (ReportConfig.primary_cost unset). With `out`, `rows` (the
    rows the table reads) and `targets`, the frontier plot is written there and shown after the table."""
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
    if out is not None and rows is not None and targets is not None:
        blocks += _frontier_block(out, rows, targets, e0, bool(results.get("adaptive")))
    without = results.get("primary_without_post_hoc")
    if without is not None:
        by_family = {w["family"]: w["verdict"] for w in without}
        changed = [f"{e['family']}: {e['verdict']} with them, {by_family.get(e['family'], 'family absent')} without"
                   for e in entries if by_family.get(e["family"]) != e["verdict"]]
        blocks.append(("p", "Without the grid points added after attack results were seen (their own Holm "
                            "adjustment): " + ("; ".join(changed) + "." if changed else "no verdict changes.")))
    return blocks
