"""The grid check of a defense study with a primary cost (issue 29), on validation accuracy only: before any
attack result of a seed is read, every family must have measured settings that the primary comparison can
read at the cost's level (a measured point, or a bracket of measured points at most max_gap apart, the
undefended target counted as every family's point, as matched.level_curves builds the curves).

It reads the trained targets' stage records (RUN/targets/NAME_seedS/stage.json, their validation accuracy)
and nothing of the attacks, so it can run while a seed's attacks are still going: a family that is not read
on some seed needs a setting inside its gap, added then, for every seed, before an attack result is read.
`lsmia experiment --config C --check-grid --out RUN` prints it."""
from __future__ import annotations

import json
from pathlib import Path

from .matched import NOT_A_DEFENSE, interpolate, level_curves
from .tradeoff import defense_of


def trained_targets(run_dir: Path, targets, seeds) -> list[dict]:
    """{"name", "seed", "val_acc"} of every finished target stage of the run (unfinished ones are left out)."""
    rows = []
    for t in targets:
        for s in seeds:
            stamp = Path(run_dir) / "targets" / f"{t.name}_seed{s}" / "stage.json"
            if not stamp.is_file():
                continue
            record = json.loads(stamp.read_text())
            val = (record.get("result") or {}).get("val_acc")
            if record.get("finished") and val is not None:
                rows.append({"name": t.name, "seed": s, "val_acc": val})
    return rows


def grid_check(rows: list[dict], targets, cost: float, max_gap: float) -> list[dict]:
    """Per family (the controls included) and seed: the level (undefended - cost), the family's measured
    validation accuracies, and whether the primary comparison can read it there. Seeds without a trained
    undefended target are skipped (no level yet)."""
    # attack Acc@1 stands in as the utility itself: the curve is the identity, so a read exists exactly
    # where the utility axis has a measured point or a narrow enough bracket
    curves_in = [{**r, "attack_acc1": r["val_acc"]} for r in rows]
    _, curves, base = level_curves(curves_in, targets, "attack_acc1")
    families = dict.fromkeys(defense_of(t) for t in targets)
    out = []
    for fam in (f for f in families if f not in NOT_A_DEFENSE):
        names = {t.name for t in targets if defense_of(t) == fam}
        for s in sorted(base):
            level = base[s] - cost
            measured = sorted((r["val_acc"] for r in rows if r["seed"] == s and r["name"] in names), reverse=True)
            read = interpolate(curves.get(fam, {}).get(s, []), level, max_gap) is not None
            out.append({"family": fam, "seed": s, "level": level, "measured": measured, "read": read})
    return out


def grid_check_text(checks: list[dict]) -> str:
    """One line per family and seed: read or NOT READ, the level and the measured validation accuracies."""
    lines = []
    for c in checks:
        acc = ", ".join(f"{100 * v:.2f}" for v in c["measured"]) or "none trained yet"
        lines.append(f"seed {c['seed']} {c['family']}: {'read' if c['read'] else 'NOT READ'} at "
                     f"{100 * c['level']:.2f} % (measured {acc})")
    return "\n".join(lines)
