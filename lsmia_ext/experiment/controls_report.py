"""Report blocks of the control comparison (controls.py): "Is it more than a weaker model?"."""
from __future__ import annotations

from .claims_report import TITLES, stat_cells, with_power
from .matched_report import AXIS

PERCENT = {"attack_acc1", "kes_test"}


def controls_sentence(entries: list[dict]) -> str:
    parts = [f"{e['entry']} (alpha {e['alpha']:+g}) vs {e['family']}: {with_power(e['verdict'], e['detectable_effect'], True)}"
             for e in entries]
    return "; ".join(parts) + "."


def controls_blocks(entries: list[dict]) -> list[tuple]:
    """The section; [] when the study has no control family or no negative-LS entry."""
    if not entries:
        return []
    e0 = entries[0]
    axis = AXIS[e0["utility"]]
    main = [[f"{e['entry']} (alpha {e['alpha']:+g})", e["family"], f"{e['n']} of {e['n'] + len(e['unread'])}",
             *stat_cells(e, True), with_power(e["verdict"], e["detectable_effect"], True)] for e in entries]
    other = [[f"{e['entry']} vs {e['family']}", TITLES.get(m, m) + (" (points)" if m in PERCENT else ""),
              *stat_cells(s, m in PERCENT)] for e in entries for m, s in e["secondary"].items()]
    return [("h2", "Is it more than a weaker model?"),
            ("p", f"Negative LS costs accuracy, and a less accurate model may leak less whatever its labels. Control "
                  f"families are hard-label models made less accurate without any defense (fewer epochs, a narrower "
                  f"model). Per seed, a control family's curve (its models plus the undefended target, attack Acc@1 "
                  f"made non-decreasing in {axis}) is read at the negative-LS target's own {axis}, only on a measured "
                  f"point or between two measured points at most {100 * e0['max_gap']:.1f} points apart; the "
                  "difference is attack Acc@1 of negative LS minus that of the equally accurate control. Verdict "
                  "from the unadjusted 95 % t interval, like the claims; beside 'no difference shown', the smallest "
                  "true difference the same seeds would detect with 80 % power."),
            ("table", ["negative LS", "control family", "seeds read", "per-seed difference (points)", "mean",
                       "95 % t interval", "verdict"], main),
            ("p", controls_sentence(entries)),
            ("p", "The same reading for delta_eval and KES (test) (no verdict; a higher delta_eval, attack images "
                  "farther from the private data, and a lower KES, a student learns less from them, both mean "
                  "less leakage):"),
            ("table", ["comparison", "metric", "per-seed difference", "mean", "95 % t interval"], other)]
