"""The dose-response trend of C1 (experiment/trend.py, trend_report.py): the per-seed least-squares slope,
its interval and verdict on a hand-computed case, which entries form a trend, and its report section."""
from __future__ import annotations

import json
import math

import pytest

from lsmia_ext.experiment.trend import dose_contrast, least_squares_slope, slope_weights, trend_groups, trend_statistics
from lsmia_ext.experiment.trend_report import trend_blocks

ALPHAS = [0.0, 0.05, 0.1, 0.2]
NAMES = ["hard", "pos05", "pos1", "pos2"]
TARGETS = [{"name": n, "alpha": a} for n, a in zip(NAMES, ALPHAS)] + [
    {"name": "neg", "alpha": -0.05},                                                    # not in the trend
    {"name": "mid", "alpha": 0.1, "set": {"defense": {"kind": "mid"}}},                 # a defense: no part
    {"name": "short", "alpha": 0.0, "family": "train less", "set": {"epochs": 2}},      # a control: no part
    {"name": "h25", "alpha": 0.0, "set": {"data": {"train_per_class": 25}}},            # 2 alphas: no trend
    {"name": "p25", "alpha": 0.1, "set": {"data.train_per_class": 25}}]
# Acc@1 per seed for hard, pos05, pos1, pos2. Seed 0: 0.5 + 0.5 a (slope 0.5); seed 1: 0.6 + 0.3 a (0.3);
# seed 2: mean a 0.0875, Sxx 0.021875, Sxy 0.006875: slope 11/35.
ACC = {0: [0.5 + 0.5 * a for a in ALPHAS], 1: [0.6 + 0.3 * a for a in ALPHAS], 2: [0.40, 0.41, 0.44, 0.46]}


def rows(acc=ACC):
    return [{"name": n, "alpha": a, "seed": s, "attack_acc1": y} for s, ys in acc.items()
            for n, a, y in zip(NAMES, ALPHAS, ys)]


def test_slope_interval_and_verdict_match_hand_computation():
    assert least_squares_slope(ALPHAS, ACC[2]) == pytest.approx(11 / 35, abs=1e-12)
    (t,) = trend_statistics(rows(), TARGETS)
    assert t["entries"] == NAMES and t["alphas"] == ALPHAS and t["seeds"] == [0, 1, 2]
    assert t["slopes"] == pytest.approx([0.5, 0.3, 11 / 35], abs=1e-12)
    # mean 0.3714286, sd sqrt(0.02489796 / 2) = 0.1115750, half-width t(0.975, 2) 4.302653 * sd / sqrt(3)
    assert t["mean"] == pytest.approx(0.3714286, abs=1e-6)
    assert t["sd"] == pytest.approx(0.1115750, abs=1e-6)
    assert t["ci"] == pytest.approx([0.0942647, 0.6485925], abs=1e-5)
    tstat = t["mean"] / (t["sd"] / math.sqrt(3))  # with 2 degrees of freedom p = 1 - t / sqrt(t^2 + 2)
    assert t["p"] == pytest.approx(1 - tstat / math.sqrt(tstat ** 2 + 2), abs=1e-9)
    assert t["detectable_effect"] > 0 and t["verdict"] == "reproduced"


def test_slope_weights_and_dose_contrast_by_hand():
    # alphas 0, 0.05, 0.1, 0.2: deviations -0.0875, -0.0375, +0.0125, +0.1125 over Sxx 0.021875, so the slope
    # weighs the doses -4, -12/7, +4/7, +36/7 (per unit alpha): nearly the 0-vs-0.2 contrast
    assert slope_weights(ALPHAS) == pytest.approx([-4, -12 / 7, 4 / 7, 36 / 7], abs=1e-12)
    assert sum(w * y for w, y in zip(slope_weights(ALPHAS), ACC[2])) == pytest.approx(11 / 35, abs=1e-12)
    # a rise at 0.05 only: +6 points there, 0 elsewhere. The slope barely moves (-12/7 * 0.06 = -0.103 per
    # unit alpha, -1.0 point per +0.1), the contrast says mean(+6, 0, 0) = +2 points
    bump = [0.5, 0.56, 0.5, 0.5]
    assert least_squares_slope(ALPHAS, bump) == pytest.approx(-12 / 7 * 0.06, abs=1e-12)
    assert dose_contrast(ALPHAS, bump) == pytest.approx(0.02, abs=1e-12)
    (t,) = trend_statistics(rows({0: bump, 1: [0.4, 0.43, 0.41, 0.40], 2: [0.6, 0.6, 0.62, 0.61]}), TARGETS)
    c = t["contrast"]  # per seed: +0.02, (0.43 + 0.41 + 0.40) / 3 - 0.4 = +0.01333, +0.01
    assert c["diffs"] == pytest.approx([0.02, 0.04 / 3, 0.01], abs=1e-12) and c["seeds"] == [0, 1, 2]
    assert c["mean"] == pytest.approx((0.02 + 0.04 / 3 + 0.01) / 3, abs=1e-12) and c["verdict"] == "reproduced"
    assert t["verdict"] == "inconclusive"  # the slope cannot see the same rise


def test_reversed_inconclusive_and_incomplete_seeds():
    (down,) = trend_statistics(rows({s: [1 - y for y in ys] for s, ys in ACC.items()}), TARGETS)
    assert down["verdict"] == "reversed" and down["mean"] == pytest.approx(-0.3714286, abs=1e-6)
    mixed = {0: ACC[0], 1: [0.6 - 0.4 * a for a in ALPHAS], 2: [0.40, 0.41, 0.44, None]}
    (t,) = trend_statistics(rows(mixed), TARGETS)
    assert t["seeds"] == [0, 1] and t["incomplete_seeds"] == [2]
    assert t["slopes"] == pytest.approx([0.5, -0.4], abs=1e-12) and t["verdict"] == "inconclusive"
    (one,) = trend_statistics(rows({0: ACC[0]}), TARGETS)
    assert one["verdict"] == "inconclusive (1 seed)" and one["ci"] is None


def test_trend_groups_take_plain_entries_of_one_recipe_with_three_alphas():
    assert [g["entries"] for g in trend_groups(TARGETS)] == [NAMES]
    three = TARGETS + [{"name": "p25b", "alpha": 0.2, "set": {"data": {"train_per_class": 25}}}]
    groups = trend_groups(three)
    assert [g["label"] for g in groups] == ["experiment recipe", "data.train_per_class=25"]
    assert groups[1]["entries"] == ["h25", "p25", "p25b"]
    assert trend_groups([t for t in TARGETS if t["name"] != "hard"]) == []  # no alpha 0: no trend
    with pytest.raises(ValueError, match="two distinct"):
        least_squares_slope([0.1, 0.1], [0.2, 0.3])


def test_report_section_has_table_and_plot(tmp_path):
    r = rows()
    blocks = trend_blocks(tmp_path, r, trend_statistics(r, TARGETS))
    table = next(b for b in blocks if b[0] == "table")
    assert table[2][0][:2] == ["experiment recipe", "+0, +0.05, +0.1, +0.2"]
    assert table[2][0][3] == "+3.7" and table[2][0][-1] == "reproduced"  # points per +0.1 alpha
    assert (tmp_path / "plot_trend.png").stat().st_size > 1000
    assert trend_blocks(tmp_path, r, []) == []
    # the dose contrast beside the slope, labelled post hoc; seed 0 (0.5 + 0.5 a): mean over 0.05, 0.1, 0.2 is
    # 0.5 + 0.5 * 0.35 / 3, so +5.8 points against alpha 0
    text = next(b[1] for b in blocks if b[0] == "p" and "dose contrast" in b[1])
    assert "-0.40 at 0, -0.17 at 0.05, +0.06 at 0.1, +0.51 at 0.2" in text and "post-hoc" in text
    ctable = [b for b in blocks if b[0] == "table"][1]
    assert ctable[1][2] == "per-seed contrast (points)" and ctable[2][0][2].startswith("s0: +5.8,")


def test_pipeline_writes_the_trend_of_a_smaller_training_set(tmp_path):
    """End to end on digits: three alphas >= 0 of a 40-image recipe, 2 seeds: results["trend"], the report
    section and its plot; the entries train on 40 images per class and are scored on the shared validation."""
    from lsmia_ext.experiment import load_experiment_config, run_experiment

    small = {"data": {"train_per_class": 40}}
    targets = [{"name": f"a{a}", "alpha": a, "set": small} for a in (0.0, 0.1, 0.2)]
    overrides = {"data.train_per_class": 80, "data.val_per_class": 20, "targets": targets}
    cfg = load_experiment_config("experiment-digits", "quick", 2, overrides)
    results = run_experiment(cfg, tmp_path, log=lambda *_: None)
    (t,) = results["trend"]
    assert t["label"] == "data.train_per_class=40" and t["seeds"] == [0, 1] and t["n"] == 2
    assert all(r["val_acc"] is not None for r in results["rows"])
    assert [c["claim"] for c in results["claims"]] == ["C1.1", "C1.2"]
    md = (tmp_path / "report.md").read_text()
    assert "## Trend: attack Acc@1 over alpha >= 0" in md and (tmp_path / "plot_trend.png").stat().st_size > 1000
    train = json.loads((tmp_path / "targets" / "a0.0_seed0" / "data_manifest.json").read_text())["private"]
    assert len(train["train_indices"]) == 40 * 5 and "val_indices" not in train


def test_several_recipes_are_holm_adjusted():
    targets = TARGETS + [{"name": "p25b", "alpha": 0.2, "set": {"data": {"train_per_class": 25}}}]
    small = {0: [0.30, 0.31, 0.32], 1: [0.35, 0.30, 0.36], 2: [0.33, 0.36, 0.31]}  # h25, p25, p25b per seed
    extra = [{"name": n, "alpha": a, "seed": s, "attack_acc1": y} for s, ys in small.items()
             for n, a, y in zip(["h25", "p25", "p25b"], [0.0, 0.1, 0.2], ys)]
    full, few = trend_statistics(rows() + extra, targets)
    assert few["label"] == "data.train_per_class=25" and few["verdict"] == "inconclusive"
    lo, hi = sorted([full["p"], few["p"]])  # Holm: 2 x the smaller p, then max(that, the larger p)
    assert sorted([full["p_holm"], few["p_holm"]]) == pytest.approx([min(1, 2 * lo), max(min(1, 2 * lo), hi)])
    assert full["holm_tests"] == 2
    assert full["verdict_holm"] == ("reproduced" if full["p_holm"] < 0.05 else "inconclusive")
    assert "p_holm" not in trend_statistics(rows(), TARGETS)[0]  # one recipe: nothing to adjust
