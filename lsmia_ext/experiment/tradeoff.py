"""Privacy-utility trade-off of defenses: test accuracy against attack Acc@1, the Pareto front, a table.

Each target entry is assigned a defense family from its own fields (its `family` label when it has one,
else set.defense.kind, then the sign of alpha), so the experiment config needs labels only for control
families (weaker hard-label models). A point is on the Pareto front when no other
point has an attack accuracy at most as high and a test accuracy at least as high, one of them strictly:
lower attack accuracy (privacy) and higher test accuracy (utility) are both better.
"""
from __future__ import annotations

from pathlib import Path

from ..runio import save_figure
from ..config import flatten_overrides

# defense.kind -> family label, and each family's dials (DefenseConfig fields) that label a setting
FAMILIES = {"mid": "MID", "bido": "BiDO", "tl_dmi": "TL-DMI", "random_erasing": "random erasing",
            "trap_mid": "Trap-MID"}
PARAMS = {"MID": ("beta",), "BiDO": ("lambda_x", "lambda_y"), "TL-DMI": ("freeze_layers", "pretrain_epochs"),
          "random erasing": ("erase_scale", "erase_p"), "Trap-MID": ("trap_beta", "trap_alpha")}


def _value(v) -> str:
    """A dial's value: a number as %g, a range (erase_scale) as low-high."""
    return "-".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else f"{v:g}"


def defense_of(entry) -> str:
    """The entry's `family` label when set, else the family of set.defense.kind (FAMILIES: "MID", "BiDO",
    "TL-DMI", "random erasing", "Trap-MID"), else
    "negative LS" | "positive LS" | "none" from alpha."""
    if getattr(entry, "family", None):
        return entry.family
    kind = flatten_overrides(entry.set).get("defense.kind", "none")
    if kind in FAMILIES:
        return FAMILIES[kind]
    return "negative LS" if entry.alpha < 0 else "positive LS" if entry.alpha > 0 else "none"


def setting_of(entry) -> str:
    """The swept value(s) of the entry, as a short label (alpha for LS, the family's PARAMS set in the entry
    for a defense, e.g. "beta 0.01", "freeze_layers 3", "erase_scale 0.1-0.4, erase_p 0.5"; "defaults" when
    it sets none; the overrides of a control family's entry)."""
    family, flat = defense_of(entry), flatten_overrides(entry.set)
    params = PARAMS.get(family) or PARAMS.get(FAMILIES.get(flat.get("defense.kind"), ""))  # "MID (sampled)": beta
    if params:
        return ", ".join(f"{p} {_value(flat[f'defense.{p}'])}" for p in params if f"defense.{p}" in flat) or "defaults"
    if getattr(entry, "family", None) and entry.alpha == 0:
        return ", ".join(f"{k} {v}" for k, v in flat.items()) or "defaults"
    return f"alpha {entry.alpha:+g}"


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (attack_acc, test_acc) points: True where no other point dominates (attack <= and test >=, with
    at least one strict). Equal points are both kept."""
    def dominates(a, b):
        return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])

    return [not any(dominates(q, p) for q in points) for p in points]


def tradeoff_rows(summary: list[dict], targets) -> list[dict]:
    """One row per target with both numbers (means over seeds): name, defense, setting, attack, test, pareto."""
    by_name = {t.name: t for t in targets}
    rows = [{"name": e["name"], "defense": defense_of(by_name[e["name"]]), "setting": setting_of(by_name[e["name"]]),
             "attack_acc1": e["attack_acc1"][0], "test_acc": e["test_acc"][0], "n_seeds": len(e.get("seeds") or [None]),
             "attack_sd": e["attack_acc1"][1], "test_sd": e["test_acc"][1]}
            for e in summary if e["name"] in by_name and e.get("attack_acc1") and e.get("test_acc")]
    for row, on in zip(rows, pareto_front([(r["attack_acc1"], r["test_acc"]) for r in rows])):
        row["pareto"] = on
    return rows


def plot_tradeoff(rows: list[dict], path: Path) -> Path:
    """One line per defense through its settings and the undefended target (black star), sorted by test
    accuracy, each point with its seed spread (std over seeds as error bars on both axes, when several
    seeds); the Pareto front of the means as a dashed step line, front points ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no target has both a test accuracy and an attack Acc@1: nothing to plot")
    fig, ax = plt.subplots(figsize=(6.0, 4.3))
    base = [r for r in rows if r["defense"] == "none"]

    def spread(pts, key):
        return None if all(r.get(key) is None for r in pts) else [100 * (r.get(key) or 0.0) for r in pts]

    for family in dict.fromkeys(r["defense"] for r in rows):
        if family == "none":
            pts, style = base, dict(color="black", marker="*", markersize=11, ls="none", zorder=4)
        else:
            pts = sorted([r for r in rows if r["defense"] == family] + base, key=lambda r: r["test_acc"])
            style = dict(marker="o", markersize=4, capsize=2, elinewidth=0.8)
        ax.errorbar([100 * r["attack_acc1"] for r in pts], [100 * r["test_acc"] for r in pts],
                    xerr=spread(pts, "attack_sd"), yerr=spread(pts, "test_sd"), label=family, **style)
        for r in pts:
            if r["defense"] == family:
                ax.annotate(r["setting"].replace("alpha ", "").replace("lambda_", "λ").replace("beta ", "β "),
                            (100 * r["attack_acc1"], 100 * r["test_acc"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["attack_acc1"])
    ax.step([100 * r["attack_acc1"] for r in front], [100 * r["test_acc"] for r in front], where="post",
            ls="--", color="grey", lw=1, label="Pareto front (means)")
    ax.scatter([100 * r["attack_acc1"] for r in front], [100 * r["test_acc"] for r in front], s=140,
               facecolors="none", edgecolors="red", lw=1.2, zorder=3)
    ax.set_xlabel("attack Acc@1 (%)  (lower = more private)")
    ax.set_ylabel("target test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(path, fig)


def tradeoff_summary(rows: list[dict]) -> str:
    """Plain words: which defense holds the front from the most accurate to the most private point."""
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: -r["test_acc"])
    if not front:
        return "No target has both numbers: no trade-off to describe."
    parts = [f"{r['defense']} ({r['setting']}) at {100 * r['test_acc']:.1f} % test accuracy / "
             f"{100 * r['attack_acc1']:.1f} % attack Acc@1" for r in front]
    families = sorted({r["defense"] for r in front})
    return (f"Pareto front, from the most accurate to the most private target: {'; '.join(parts)}. "
            f"Defenses on the front: {', '.join(families)}; every other target is beaten on both axes "
            "(or tied on one) by a front point. "
            + ("One seed gives no spread: gaps of a few points may be noise."
               if max(r["n_seeds"] for r in rows) == 1 else
               "Points are means over seeds; compare gaps with the spreads in the results table."))


def tradeoff_blocks(out: Path, summary: list[dict], targets) -> list[tuple]:
    """Report blocks (heading, plot, table, words) when more than one defense family is present, else []."""
    rows = tradeoff_rows(summary, targets)
    if len({r["defense"] for r in rows}) < 2:
        return []
    plot_tradeoff(rows, Path(out) / "plot_tradeoff.png")
    table = [[r["name"], r["defense"], r["setting"], f"{100 * r['test_acc']:.1f}", f"{100 * r['attack_acc1']:.1f}",
              "yes" if r["pareto"] else ""] for r in sorted(rows, key=lambda r: (r["defense"], r["attack_acc1"]))]
    return [("h2", "Privacy-utility trade-off of the defenses"),
            ("img", "plot_tradeoff.png", "test accuracy against attack Acc@1, one line per defense (through the "
                    "undefended target), std over seeds as error bars, Pareto front of the means ringed"),
            ("table", ["target", "defense", "setting", "test acc %", "attack Acc@1 %", "Pareto"], table),
            ("p", tradeoff_summary(rows))] + _sampled_note(targets)


def _sampled_note(targets) -> list[tuple]:
    """A sentence for entries attacked with their MID sampling on (TargetEntry.attack_set)."""
    names = [t.name for t in targets if getattr(t, "attack_set", {}).get("target_sampling")]
    if not names:
        return []
    return [("p", f"{', '.join(names)}: the same trained targets as their target_of entries, attacked with the MID "
                  "bottleneck sampling on (as the MID authors run their targets); their test and validation "
                  "accuracy are scored with sampling too, so they sit at another utility than the mean-attacked "
                  "entries (results.json rows keep the noise-free values as *_mean).")]
