"""Report blocks of the matched-utility comparison (matched.py): a table per pair and drop, and the
verdicts in words, computed from the intervals."""
from __future__ import annotations

from .matched import DROPS, matched_comparison


def _pts(v) -> str:
    return "n/a" if v is None else f"{100 * v:+.1f}"


def _ci(ci) -> str:
    return "n/a" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _mean(vals) -> str:
    return "n/a" if not vals else f"{100 * sum(vals) / len(vals):.1f}"


def matched_sentence(entries: list[dict]) -> str:
    """Which defense is more private at which cost (with the interval), and where nothing is told apart."""
    if not entries:
        return "Fewer than two defense families have results: no matched-utility comparison."
    said, ties = [], []
    for e in entries:
        where = f"at a cost of {100 * e['drop']:.1f} points"
        if e["verdict"].endswith("more private"):
            said.append(f"{where}: {e['verdict']} than {e['b'] if e['verdict'].startswith(e['a']) else e['a']} "
                        f"(attack Acc@1 {e['a']} - {e['b']} = {_pts(e['mean'])} points, 95 % CI {_ci(e['ci'])}, "
                        f"{e['n']} seeds)")
        else:
            ties.append(f"{e['a']} vs {e['b']} {where} ({e['verdict']}"
                        + (f", {_pts(e['mean'])} points, CI {_ci(e['ci'])}" if e["ci"] else "") + ")")
    text = ("Told apart " + "; ".join(said) + ". ") if said else "No pair of defenses is told apart at any cost. "
    if ties:
        text += "Not told apart: " + "; ".join(ties) + "."
    return text


def matched_blocks(rows: list[dict], targets, drops=DROPS) -> list[tuple]:
    """Report blocks; [] when fewer than two defense families are present."""
    entries = matched_comparison(rows, targets, drops)
    if not entries:
        return []
    body = [[f"{100 * e['drop']:.1f}", e["a"], e["b"], str(e["n"]), _mean(e["a_values"]), _mean(e["b_values"]),
             _pts(e["mean"]), _ci(e["ci"]), e["verdict"]] for e in entries]
    return [("h2", "Defenses at matched utility"),
            ("p", "Per seed, each defense's curve (its settings plus the undefended target; attack Acc@1 made "
                  "non-decreasing in test accuracy, then linear between points) is read at the test accuracy "
                  "of the undefended target minus the cost. Differences are paired by seed; a seed counts only "
                  "where both curves reach that accuracy (no extrapolation). Verdict from the 95 % t interval."),
            ("table", ["cost (points)", "A", "B", "seeds", "A attack Acc@1 %", "B attack Acc@1 %",
                       "A - B (points)", "95 % CI", "verdict"], body),
            ("p", matched_sentence(entries))]
