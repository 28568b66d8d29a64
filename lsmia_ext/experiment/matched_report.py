"""Report blocks of the matched-utility comparison (matched.py): a table per pair and drop (with the
verdict without post-hoc grid points beside it when there are any), and the verdicts in words."""
from __future__ import annotations

from .claims_report import holm_level, with_power
from .matched import NOT_MEASURED

AXIS = {"val_acc": "validation accuracy", "test_acc": "test accuracy"}
EXPLORATORY = ("Exploratory: this study fixed its primary comparisons before the run (the table 'Primary "
               "comparisons' above: one cost, each defense against one reference family, Holm over those alone). "
               "Every other cost and pair is here, read the same way but unadjusted for multiplicity and with no "
               "Holm family of its own, so nothing here decides a ranking: a difference found here is a lead for "
               "a new study. The primary pairs are not repeated here.")
_EXPLORATORY_RULE = ("Verdict: two-sided paired t test at the unadjusted 0.05 (no multiplicity adjustment); the 95 % "
                     "t interval beside it is not adjusted either. Beside 'no difference shown': the smallest true "
                     "difference the same seeds would detect with 80 % power at 0.05.")


def _pts(v) -> str:
    return "n/a" if v is None else f"{100 * v:+.1f}"


def _ci(ci) -> str:
    return "n/a" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _mean(vals) -> str:
    return "n/a" if not vals else f"{100 * sum(vals) / len(vals):.1f}"


def _p(p) -> str:
    return "n/a" if p is None else f"{p:.3f}"


def _verdict(e: dict) -> str:
    """The Holm verdict; when undecided, the effect detectable at Holm's first step, then the unadjusted one
    (an exploratory entry, matched.py: the unadjusted verdict and effect)."""
    if e.get("exploratory"):
        return with_power(e["verdict"], e["detectable_effect"], True, "unadjusted")
    verdict = with_power(e["verdict"], e.get("detectable_effect_holm"), True, holm_level(e))
    if verdict == e["verdict"] or e["detectable_effect"] is None:
        return verdict
    return f"{verdict[:-1]}; ±{100 * e['detectable_effect']:.1f} unadjusted)"


def _costs(entries: list[dict]) -> str:
    return ", ".join(f"{100 * d:.1f}" for d in sorted({e["drop"] for e in entries}))


def _p_read(e: dict) -> tuple[str, str]:
    """(name, value) of the p a verdict is read from: Holm-adjusted, or unadjusted in an exploratory table."""
    return ("p (unadjusted)", _p(e["p"])) if e.get("exploratory") else ("Holm p", _p(e["p_holm"]))


def _key(e: dict) -> tuple:
    return e["drop"], e["a"], e["b"]


def matched_sentence(entries: list[dict]) -> str:
    """Which defense is more private at which cost (with the interval), and where nothing is told apart."""
    if not entries:
        return "Fewer than two defense families have results: no matched-utility comparison."
    said, ties, unmeasured = [], [], []
    for e in entries:
        where = f"at a cost of {100 * e['drop']:.1f} points"
        if e["verdict"].endswith("more private"):
            said.append(f"{where}: {e['verdict']} than {e['b'] if e['verdict'].startswith(e['a']) else e['a']} "
                        f"(attack Acc@1 {e['a']} - {e['b']} = {_pts(e['mean'])} points, 95 % CI {_ci(e['ci'])}, "
                        f"{' '.join(_p_read(e))}, {e['n']} seeds)")
        elif e["verdict"] == NOT_MEASURED:
            unmeasured.append(f"{e['a']} vs {e['b']} {where}")
        else:
            ties.append(f"{e['a']} vs {e['b']} {where} ({_pts(e['mean'])} points, CI {_ci(e['ci'])}; {_verdict(e)})")
    text = ("Told apart " + "; ".join(said) + ". ") if said else "No pair of defenses is told apart at any cost. "
    if ties:
        text += "Not told apart: " + "; ".join(ties) + ". "
    if unmeasured:
        text += ("Not measured (fewer than 2 seeds with both families inside a measured bracket): "
                 + "; ".join(unmeasured) + ".")
    return text.strip()


def matched_blocks(comparison: dict) -> list[tuple]:
    """Report blocks of matched.matched_results' dict (results.json "matched", "matched_without_post_hoc",
    "post_hoc", "matched_post_hoc_costs"); [] when fewer than two defense families are present."""
    entries = comparison.get("matched") or []
    if not entries:
        return []
    exploratory = bool(entries[0].get("exploratory"))
    title = "Defenses at matched utility" + (" (exploratory, unadjusted)" if exploratory else "")
    if all(e["verdict"] == NOT_MEASURED for e in entries):  # e.g. a study whose families sit far below the baseline
        costs = _costs(entries)
        return [("h2", title),
                ("p", f"Not measured at any cost ({costs} points): no two families have measured settings within "
                      f"{100 * entries[0]['max_gap']:.1f} points of accuracy around those levels on 2 or more seeds.")
                ] + _post_hoc_cost_blocks(comparison.get("matched_post_hoc_costs") or [])
    without = {_key(e): e for e in comparison.get("matched_without_post_hoc") or []}
    late = comparison.get("post_hoc") or []
    e0 = entries[0]
    axis = AXIS[e0["utility"]]
    blocks = [("h2", title),
              *([("p", EXPLORATORY)] if exploratory else []),
              ("p", f"Per seed, each family's curve (its settings plus the undefended target; attack Acc@1 made "
                    f"non-decreasing in {axis}) is read at the {axis} of the undefended target minus the cost, only "
                    f"on a measured point or between two measured points of that seed at most "
                    f"{100 * e0['max_gap']:.1f} points apart (linear there); elsewhere the family is not "
                    "measured on that seed, and a comparison with fewer than 2 seeds read says 'not measured'. "
                    "Differences are paired by seed. " + (_EXPLORATORY_RULE if exploratory else
                    "Verdict: two-sided paired t test, p adjusted with Holm's "
                    f"method across the {e0['holm_tests']} comparisons of this table, significant "
                    "below 0.05; the 95 % t interval beside it is not adjusted. Beside 'no difference shown': the "
                    "smallest true difference the same seeds would detect with 80 % power at the level the verdict "
                    f"is read, Holm's first step (0.05/{e0['holm_tests']}: the smallest p must pass it), then the "
                    "same at the unadjusted 0.05 (Holm's last step, the most lenient).")),
              _table(entries, without if late else None),
              ("p", matched_sentence(entries))]
    if late:
        changed = [f"{e['a']} vs {e['b']} at a cost of {100 * e['drop']:.1f} points: {e['verdict']} with them, "
                   + (without[_key(e)]["verdict"] if _key(e) in without else "family absent") + " without"
                   for e in entries if _key(e) not in without or without[_key(e)]["verdict"] != e["verdict"]]
        blocks.append(("p", f"Grid points added after attack results were seen: {', '.join(late)}. The last column "
                            "repeats the comparison without them (with its own Holm adjustment). "
                            + ("Verdicts that change: " + "; ".join(changed) + "." if changed else
                               "No verdict changes without them.")))
    return blocks + _post_hoc_cost_blocks(comparison.get("matched_post_hoc_costs") or [])


def _table(entries: list[dict], without: dict | None) -> tuple:
    """The matched table; with `without` (the comparison without post-hoc grid points, by key) a last
    column with its verdicts."""
    header = ["cost (points)", "A", "B", "seeds read", "A attack Acc@1 %", "B attack Acc@1 %", "A - B (points)",
              "95 % CI (unadjusted)", "p (unadjusted)" if entries[0].get("exploratory") else "p (Holm)", "verdict"]
    if without is not None:
        header.append("verdict without post-hoc points")
    body = [[f"{100 * e['drop']:.1f}", e["a"], e["b"], f"{e['n']} of {e['seeds_total']}",
             _mean(e["a_values"]), _mean(e["b_values"]), _pts(e["mean"]), _ci(e["ci"]), _p_read(e)[1], _verdict(e)]
            + ([_verdict(without[_key(e)]) if _key(e) in without else "family absent"] if without is not None else [])
            for e in entries]
    return "table", header, body


def _post_hoc_cost_blocks(entries: list[dict]) -> list[tuple]:
    """The comparison at costs chosen after the main table was read (report.post_hoc_drops), apart."""
    if not entries:
        return []
    read = [e for e in entries if e["verdict"] != NOT_MEASURED]
    costs = _costs(entries)
    adjusted = ("unadjusted, like the table above" if entries[0].get("exploratory") else
                f"Holm's adjustment runs over these {entries[0]['holm_tests']} comparisons only")
    intro = (f"Cost levels chosen after the table above was read ({costs} points, report.post_hoc_drops), read the "
             f"same way; {adjusted}, so they change no verdict above. A post-hoc look: treat its verdicts as leads "
             "for a new study, not as results.")
    if not read:
        return [("p", intro + " Every pair is not measured there.")]
    return [("p", intro), _table(read, None), ("p", matched_sentence(read))]
