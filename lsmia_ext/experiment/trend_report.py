"""Report blocks of the dose-response trend (trend.py): the slope table and the per-seed trend plot."""
from __future__ import annotations

from pathlib import Path

from ..runio import save_figure
from .claims_report import after_holm, stat_cells, with_power
from .trend import REPORT_STEP

PLOT = "plot_trend.png"


def _scaled(t: dict) -> dict:
    """The trend's statistics in metric per REPORT_STEP of alpha (what the table shows)."""
    s = REPORT_STEP
    return {"seeds": t["seeds"], "diffs": [s * b for b in t["slopes"]], "n": t["n"],
            "mean": None if t["mean"] is None else s * t["mean"],
            "ci": None if t["ci"] is None else [s * t["ci"][0], s * t["ci"][1]],
            "effect": None if t["detectable_effect"] is None else s * t["detectable_effect"]}


def trend_table(trend: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["recipe", "alphas", f"per-seed slope (points per +{REPORT_STEP:g} alpha)", "mean",
              "95 % t interval", "p", "verdict"]
    body = []
    for t in trend:
        view = _scaled(t)
        body.append([t["label"], ", ".join(f"{a:+g}" for a in t["alphas"]), *stat_cells(view, True),
                     "n/a" if t["p"] is None else f"{t['p']:.3f}",
                     after_holm(with_power(t["verdict"], view["effect"], True, "unadjusted" if "p_holm" in t else ""),
                                t, True, REPORT_STEP)])
    return header, body


def contrast_table(trend: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The dose contrast "any positive alpha vs 0" (trend.dose_contrast) per recipe, in points."""
    header = ["recipe", "alphas", "per-seed contrast (points)", "mean", "95 % t interval", "p", "verdict"]
    body = []
    for t in trend:
        c = t["contrast"]
        body.append([t["label"], ", ".join(f"{a:+g}" for a in t["alphas"]), *stat_cells(c, True),
                     "n/a" if c["p"] is None else f"{c['p']:.3f}",
                     after_holm(with_power(c["verdict"], c["detectable_effect"], True,
                                           "unadjusted" if "p_holm" in c else ""), c)])
    return header, body


def _weights(t: dict) -> str:
    return ", ".join(f"{w / 10:+.2f} at {a:g}" for a, w in zip(t["alphas"], t["slope_weights"]))


def contrast_blocks(trend: list[dict]) -> list[tuple]:
    """The slope's dose weights and the dose contrast beside it (results of older versions have neither)."""
    if not all("contrast" in t for t in trend):
        return []
    return [("p", "What the slope reads: it is a weighted sum of the doses' Acc@1, weights per +0.1 alpha: "
                  + "; ".join(f"{t['label']}: {_weights(t)}" for t in trend)
                  + ". With unequal spacing it is close to the contrast of the lowest and highest alpha and nearly "
                    "blind to the doses in between, so a rise at a small alpha that falls back at a large one does "
                    "not move it. Beside it, the dose contrast of the question 'does any positive alpha leak more "
                    "than alpha 0?': per seed, the mean attack Acc@1 over the positive alphas minus Acc@1 at alpha 0, "
                    "every dose weighed alike. Added after C1's results were read (issue 30): a post-hoc analysis "
                    "for that study, not a pre-planned test."),
            ("table", *contrast_table(trend))]


def plot_trend(rows: list[dict], trend: list[dict], path: Path) -> Path:
    """One panel per recipe: attack Acc@1 against alpha, a thin line per seed, and the least-squares line
    of the mean slope through the mean of every alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(trend), figsize=(4.2 * len(trend), 3.6), squeeze=False)
    for ax, t in zip(axes[0], trend):
        value = {(r["name"], r["seed"]): r[t["metric"]] for r in rows if r["name"] in t["entries"]}
        for seed in t["seeds"]:
            ax.plot(t["alphas"], [100 * value[(n, seed)] for n in t["entries"]], marker="o", lw=0.8, alpha=0.6,
                    label=f"seed {seed}")
        if t["mean"] is not None:
            xs = t["alphas"]
            means = [sum(value[(n, s)] for s in t["seeds"]) / t["n"] for n in t["entries"]]
            mx, my = sum(xs) / len(xs), sum(means) / len(means)
            ax.plot([xs[0], xs[-1]], [100 * (my + t["mean"] * (x - mx)) for x in (xs[0], xs[-1])], color="black",
                    lw=2.2, label=f"mean slope ({t['verdict']})")
        ax.set_title(t["label"], fontsize=8)
        ax.set_xticks(t["alphas"])
        ax.set_xlabel("label smoothing alpha")
        ax.set_ylabel("attack Acc@1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(path, fig)


def trend_blocks(out: Path, rows: list[dict], trend: list[dict]) -> list[tuple]:
    """The trend section; [] when the study has no recipe with a trend (trend.trend_groups)."""
    if not trend:
        return []
    plot_trend(rows, trend, Path(out) / PLOT)
    return [("h2", "Trend: attack Acc@1 over alpha >= 0 (dose-response, paired by seed)"),
            ("p", "Per seed, the least-squares slope of attack Acc@1 over the recipe's alphas >= 0; the slopes' "
                  "mean and 95 % t interval over seeds. Reproduced (positive LS leaks more) when the interval "
                  "lies above 0, reversed when below, inconclusive otherwise, with the slope a two-sided t test "
                  "on the same seeds finds with 80 % power. A recipe is the set of entries with the same "
                  "overrides (for example a smaller training set per identity)."),
            ("table", *trend_table(trend)),
            *contrast_blocks(trend),
            ("img", PLOT, "attack Acc@1 against alpha, one line per seed; black: the mean least-squares slope")]
