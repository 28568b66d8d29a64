"""Report blocks of the paired claims (stats.py): the verdict table, the other metrics' paired
differences, the paired per-seed plot, and the same table read from another finished study (ablation)."""
from __future__ import annotations

from pathlib import Path

from ..runio import read_json, save_figure
from .stats import CONFIDENCE, HOLM_LEVEL, POWER, VERDICT_METRIC, claim_statistics, detectable_effect

ABLATION_HEADING = "Ablation: prior without the private domain"
TITLES = {"attack_acc1": "attack Acc@1", "attack_acc1_initial": "Acc@1 after initial selection",
          "attack_acc5": "attack Acc@5", "attack_acc_category": "attack in the right category", "delta_eval": "delta_eval", "fid": "FID", "kes_test": "KES test",
          "test_acc": "test acc", "val_acc": "val acc", "test_acc_cost": "test-acc cost"}
UNDECIDED = ("inconclusive", "no difference shown")  # verdicts shown with the effect the study could detect


def _num(value: float, pct: bool, sign: bool = True) -> str:
    v = 100 * value if pct else value
    return f"{v:+.{1 if pct else 3}f}" if sign else f"{v:.{1 if pct else 3}f}"


def stat_cells(stat: dict, pct: bool) -> list[str]:
    """per-seed differences, mean, interval (points for percentages)."""
    per_seed = ", ".join(f"s{s}: {_num(d, pct)}" for s, d in zip(stat["seeds"], stat["diffs"])) or "n/a"
    mean = "n/a" if stat["mean"] is None else _num(stat["mean"], pct)
    ci = "undefined (1 seed)" if stat["n"] == 1 else "n/a" if stat["ci"] is None else \
        f"[{_num(stat['ci'][0], pct)}, {_num(stat['ci'][1], pct)}]"
    return [per_seed, mean, ci]


def _comparison(c: dict) -> str:
    if c.get("metric") == "test_acc_cost":
        return f"cost: {c['baseline']} (alpha 0) - {c['name']} (alpha {c['alpha']:+g}), test acc"
    return f"{c['name']} (alpha {c['alpha']:+g}) - {c['baseline']} (alpha 0)"


def _paper(c: dict) -> str:
    if "threshold" in c:
        return f"cost below {100 * c['threshold']:.1f} points"
    return f"attack Acc@1 {'higher' if c['direction'] > 0 else 'lower'}"


def effect_of(stat: dict):
    """The effect 80 % power would find: recorded, or computed from sd and n (results of older versions)."""
    return stat["detectable_effect"] if "detectable_effect" in stat else detectable_effect(stat.get("sd"), stat["n"])


def with_power(verdict: str, effect, pct: bool, where: str = "") -> str:
    """An undecided verdict with the smallest true difference the same seeds would have detected (`where`:
    the level it was computed at, when the reader must be told)."""
    if effect is None or not verdict.startswith(UNDECIDED):
        return verdict
    if pct and effect >= 1:  # an accuracy moves at most 100 points: say so rather than quote an impossible effect
        return f"{verdict} (not even a 100-point difference is detectable at {100 * POWER:.0f} % power{', ' + where if where else ''})"
    return (f"{verdict} (could detect ±{_num(effect, pct, sign=False)}{' points' if pct else ''} at "
            f"{100 * POWER:.0f} % power{', ' + where if where else ''})")


def holm_level(c: dict) -> str:
    """Where a Holm-adjusted verdict's detectable effect was computed (stats.detectable_effect_holm)."""
    return f"at Holm's first step, level {HOLM_LEVEL:g}/{c['holm_tests']}"


def after_holm(verdict: str, c: dict, pct: bool = True, scale: float = 1.0) -> str:
    """A verdict with what is left of it after the Holm adjustment of its family, when it has one, and the
    effect detectable at the level that verdict is read (scaled like the verdict's numbers)."""
    if "p_holm" not in c:
        return verdict
    p = "n/a" if c["p_holm"] is None else f"{c['p_holm']:.3f}"
    effect = c.get("detectable_effect_holm")
    held = with_power(c["verdict_holm"], None if effect is None else scale * effect, pct, holm_level(c))
    return f"{verdict}; Holm-adjusted over {c['holm_tests']} tests: p {p}, {held}"


def _verdict(c: dict, pct: bool = True) -> str:
    """The claim's verdict, with the detectable effect when undecided (its metric is an accuracy: points)
    and, in a family of several claims, the verdict after Holm's adjustment."""
    where = "unadjusted" if "p_holm" in c else ""
    return after_holm(with_power(c["verdict"], effect_of(c["metrics"][c.get("metric", VERDICT_METRIC)]), pct, where),
                      c, pct)


def claims_table(claims: list[dict], percent: set[str]) -> tuple[list[str], list[list[str]]]:
    pct = VERDICT_METRIC in percent
    header = ["claim", "comparison", "paper", "per-seed difference" + (" (points)" if pct else ""),
              "mean", f"{100 * CONFIDENCE:.0f} % t interval", "verdict"]
    body = [[c["claim"], _comparison(c), _paper(c), *stat_cells(c["metrics"][c.get("metric", VERDICT_METRIC)], pct),
             _verdict(c, pct)] for c in claims]
    return header, body


def other_metrics_table(claims: list[dict], percent: set[str]) -> tuple[list[str], list[list[str]]]:
    header = ["claim", "metric", "per-seed difference", "mean", f"{100 * CONFIDENCE:.0f} % t interval"]
    body = [[c["claim"], TITLES.get(key, key) + (" (points)" if key in percent else ""), *stat_cells(stat, key in percent)]
            for c in claims for key, stat in c["metrics"].items() if key != c.get("metric", VERDICT_METRIC)]
    return header, body


def verdict_sentence(claims: list[dict]) -> str:
    if not claims:
        return ("No claim to test: the study has no alpha = 0 target next to a positive or negative alpha "
                "with the same overrides.")
    parts = [f"{c['claim']} ({_comparison(c)}, paper: {_paper(c)}): {_verdict(c)}" for c in claims]
    cost = next((c for c in claims if "threshold" in c), None)
    holm_note = ("Several claims of one kind (C1.1, C1.2, ...; C2.1a, C2.2a, ...) form a family: their p-values "
                 "are also Holm-adjusted and the verdict that survives at 5 % is given after it. "
                 if any("p_holm" in c for c in claims) else "")
    return ("Verdicts computed from the paired differences of attack Acc@1 (same seed, entry minus baseline): "
            "reproduced when the 95 % t interval (n - 1 degrees of freedom) excludes 0 in the paper's "
            "direction, reversed when it excludes 0 the other way, inconclusive otherwise. " + holm_note
            + ("" if cost is None else
               "Negative LS is claimed to protect at a small cost, so C2 has two halves: 'a' is the attack drop "
               "above, 'b' the test-accuracy cost (baseline minus entry, same seed), reproduced when its whole "
               f"interval lies below the paper's {100 * cost['threshold']:.1f} points ({cost['threshold_source']}), "
               "reversed (a larger cost) when wholly above, inconclusive otherwise. ")
            + f"Beside an undecided verdict: the smallest true difference a two-sided t test on the same seeds "
              f"finds with {100 * POWER:.0f} % power at the observed spread, at the level that verdict is read "
              "(5 % unadjusted; after Holm, at its first step, 5 % divided by the number of tests). "
            + "; ".join(parts) + ".")


def plot_claims(rows: list[dict], claims: list[dict], path: Path) -> Path:
    """Left: attack Acc@1 of each seed against alpha, one line per seed through the claims' entries.
    Right: per claim, the per-seed differences (dots), their mean and the 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claims = [c for c in claims if c.get("metric", VERDICT_METRIC) == VERDICT_METRIC]  # attack claims only
    names = list(dict.fromkeys(n for c in claims for n in (c["name"], c["baseline"])))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    for seed in sorted({r["seed"] for r in rows}):
        pts = sorted((r["alpha"], 100 * r[VERDICT_METRIC]) for r in rows
                     if r["seed"] == seed and r["name"] in names and r.get(VERDICT_METRIC) is not None)
        if pts:
            left.plot(*zip(*pts), marker="o", alpha=0.7, label=f"seed {seed}")
    left.set_xticks(sorted({r["alpha"] for r in rows if r["name"] in names}))
    left.set_xlabel("label smoothing alpha")
    left.set_ylabel("attack Acc@1 (%)")
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    for i, c in enumerate(claims):
        stat = c["metrics"][VERDICT_METRIC]
        right.scatter([i] * stat["n"], [100 * d for d in stat["diffs"]], color="grey", s=14, zorder=2)
        if stat["mean"] is not None:
            err = None if stat["ci"] is None else [[100 * (stat["mean"] - stat["ci"][0])], [100 * (stat["ci"][1] - stat["mean"])]]
            right.errorbar([i + 0.15], [100 * stat["mean"]], yerr=err, fmt="o", color="C3", capsize=5, zorder=3)
    right.axhline(0, color="black", lw=0.8)
    right.set_xticks(range(len(claims)))
    right.set_xticklabels([f"{c['claim']}: alpha {c['alpha']:+g}\nminus alpha 0\n({c['verdict']})" for c in claims],
                          fontsize=7)
    right.set_xlim(-0.6, len(claims) - 0.4)
    right.set_ylabel("Acc@1 difference, same seed (points)")
    right.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_figure(path, fig)


def claims_blocks(out: Path, rows: list[dict], claims: list[dict], percent: set[str]) -> list[tuple]:
    """The study's own claims section (heading, tables, plot); [] when it has no claim (the results
    paragraph says so with verdict_sentence)."""
    if not claims:
        return []
    blocks: list[tuple] = [("h2", "Claims: paired by seed")]
    blocks.append(("table", *claims_table(claims, percent)))
    plot_claims(rows, claims, Path(out) / "plot_claims.png")
    blocks.append(("img", "plot_claims.png", "attack Acc@1 per seed against alpha (left) and the paired "
                                             "differences with their mean and 95 % interval (right)"))
    blocks.append(("p", "Paired differences of the other metrics (no verdict; lower FID and delta_eval mean "
                        "attack images closer to the private data):"))
    blocks.append(("table", *other_metrics_table(claims, percent)))
    return blocks


def ablation_summary(run_dir: str | Path) -> dict:
    """{"dir", "data", "seeds", "claims"} of another finished study (results.json["ablation"]); claims
    are recomputed from its rows and targets when its results.json predates them."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"ablation: {path} does not exist; give the run directory of a finished "
                                "`lsmia experiment`")
    results = read_json(path)
    try:
        exp = results["settings"]["experiment"]
        claims = results.get("claims")
        if claims is None:
            claims = claim_statistics(results["rows"], exp["targets"])
    except KeyError as err:
        raise ValueError(f"ablation: {path} lacks {err}; it was not written by `lsmia experiment`") from None
    return {"dir": str(run_dir), "data": exp.get("data", {}), "seeds": exp.get("seeds"), "claims": claims}


def ablation_blocks(ablation: dict, percent: set[str]) -> list[tuple]:
    data, claims = ablation["data"], ablation["claims"]
    blocks: list[tuple] = [("h2", ABLATION_HEADING),
                           ("p", f"Study {ablation['dir']}: {data.get('name', '?')}, private classes "
                                 f"{data.get('private_classes')}, public classes {data.get('public_classes')}, "
                                 f"seeds {ablation['seeds']}. " + verdict_sentence(claims))]
    if claims:
        blocks.append(("table", *claims_table(claims, percent)))
    return blocks
