"""Matched-utility comparison of defenses: isotonic curve, interpolation inside measured brackets only,
paired intervals, Holm-adjusted verdicts on hand-computed three-seed studies, post-hoc grid points, the
control comparison (negative LS against weaker hard-label models) and the report blocks; old results.json
files of docs/ still read."""
import json
import math
from pathlib import Path

import pytest

from lsmia_ext.experiment.config import ReportConfig, TargetEntry
from lsmia_ext.experiment.matched import (family_curves, interpolate, isotonic, matched_comparison, matched_results,
                                          matched_verdict, monotone_curve)
from lsmia_ext.experiment.matched_report import matched_blocks, matched_sentence
from lsmia_ext.experiment.stats import detectable_effect, t_critical


def test_isotonic_pools_adjacent_violators():
    assert isotonic([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert isotonic([3.0, 2.0, 1.0]) == [2.0, 2.0, 2.0]
    assert isotonic([]) == []


def test_interpolation_on_a_monotone_curve_by_hand():
    # (test acc, attack): the 0.85 -> 0.90 dip is pooled to 0.45, 0.45
    curve = monotone_curve([(0.95, 0.9), (0.80, 0.2), (0.90, 0.4), (0.85, 0.5)])
    assert [x for x, _ in curve] == [0.80, 0.85, 0.90, 0.95]
    assert [y for _, y in curve] == pytest.approx([0.2, 0.45, 0.45, 0.9])
    assert interpolate(curve, 0.925) == pytest.approx(0.675)  # 0.45 + (0.9 - 0.45) / 2
    assert interpolate(curve, 0.825) == pytest.approx(0.325)
    assert interpolate(curve, 0.95) == pytest.approx(0.9) and interpolate(curve, 0.80) == pytest.approx(0.2)
    assert interpolate(curve, 0.79) is None and interpolate(curve, 0.951) is None  # no extrapolation
    assert monotone_curve([(0.9, 0.2), (0.9, 0.4)]) == [(0.9, pytest.approx(0.3))]  # equal test accs merged
    with pytest.raises(ValueError, match="at least one"):
        monotone_curve([])


def _study():
    targets = [TargetEntry(name="undefended", alpha=0.0), TargetEntry(name="pos", alpha=0.1),
               TargetEntry(name="neg_a", alpha=-0.05), TargetEntry(name="neg_b", alpha=-0.1),
               TargetEntry(name="mid_a", alpha=0.0, set={"defense": {"kind": "mid", "beta": 0.01}}),
               TargetEntry(name="mid_b", alpha=0.0, set={"defense.kind": "mid", "defense.beta": 0.1}),
               TargetEntry(name="bido_a", alpha=0.0, set={"defense": {"kind": "bido", "lambda_x": 0.05}}),
               TargetEntry(name="bido_b", alpha=0.0, set={"defense": {"kind": "bido", "lambda_x": 0.5}})]
    noise = [0.1, -0.1, 0.05]
    rows = []
    for s in range(3):
        for name, test, attack in [("undefended", 0.90, 0.80), ("pos", 0.905, 0.95),
                                   ("neg_a", 0.88, 0.30 + 0.01 * s), ("neg_b", 0.86, 0.20),
                                   ("mid_a", 0.89, 0.70), ("mid_b", 0.86, 0.60 + 0.02 * s),
                                   ("bido_a", 0.89, 0.55 + noise[s]), ("bido_b", 0.86, 0.10)]:
            rows.append({"name": name, "seed": s, "test_acc": test, "attack_acc1": attack})
    return rows, targets


def test_matched_comparison_by_hand():
    rows, targets = _study()
    curves = family_curves(rows, targets)
    assert set(curves) == {"negative LS", "MID", "BiDO"}  # positive LS is no defense; undefended in every curve
    assert curves["MID"][0] == [(0.86, 0.60), (0.89, 0.70), (0.90, 0.80)]
    entries = matched_comparison(rows, targets, drops=[0.01, 0.05], max_gap=0.05)  # brackets 2 points wide
    assert all(e["utility"] == "test_acc" for e in entries)  # these rows have no val_acc
    assert [(e["drop"], e["a"], e["b"]) for e in entries[:3]] == [
        (0.01, "negative LS", "MID"), (0.01, "negative LS", "BiDO"), (0.01, "MID", "BiDO")]
    # level 0.89 on every seed: negative LS halfway between (0.88, 0.30 + 0.01 s) and (0.90, 0.80); MID at 0.70
    neg_mid = entries[0]
    assert neg_mid["a_values"] == pytest.approx([0.55, 0.555, 0.56]) and neg_mid["b_values"] == pytest.approx([0.70] * 3)
    assert neg_mid["diffs"] == pytest.approx([-0.15, -0.145, -0.14])
    half = t_critical(2) * 0.005 / math.sqrt(3)
    assert neg_mid["mean"] == pytest.approx(-0.145) and neg_mid["ci"] == pytest.approx([-0.145 - half, -0.145 + half])
    # p with 2 degrees of freedom: 1 - t / sqrt(t^2 + 2), t = 0.145 / (0.005 / sqrt 3); Holm over the 3 measured
    # comparisons (the 3 at cost 0.05 are not measured and take no part): 3 x the smallest p
    tt = 0.145 / (0.005 / math.sqrt(3))
    assert neg_mid["p"] == pytest.approx(1 - tt / math.sqrt(tt ** 2 + 2), rel=1e-6)
    assert neg_mid["holm_tests"] == 3 and neg_mid["p_holm"] == pytest.approx(3 * neg_mid["p"])
    assert neg_mid["verdict"] == "negative LS more private"
    # BiDO at 0.89 is 0.55 + (0.1, -0.1, 0.05): differences straddle 0
    assert entries[1]["diffs"] == pytest.approx([-0.1, 0.105, -0.04]) and entries[1]["verdict"] == "no difference shown"
    # its power is read where its verdict is: at Holm's first step, 0.05 / 3 (stats.detectable_effect_holm)
    assert entries[1]["detectable_effect_holm"] == pytest.approx(
        detectable_effect(entries[1]["sd"], 3, confidence=1 - 0.05 / 3))
    assert entries[1]["detectable_effect_holm"] > entries[1]["detectable_effect"]
    # MID - BiDO = 0.15 - noise = (0.05, 0.25, 0.10): positive on every seed, yet the 3-seed interval holds 0
    assert entries[2]["diffs"] == pytest.approx([0.05, 0.25, 0.10]) and entries[2]["ci"][0] < 0 < entries[2]["ci"][1]
    assert entries[2]["verdict"] == "no difference shown" and entries[2]["p_holm"] == pytest.approx(2 * entries[2]["p"])
    far = [e for e in entries if e["drop"] == 0.05]  # level 0.85: below every curve
    assert all(e["n"] == 0 and e["verdict"] == "not measured" and e["p_holm"] is None for e in far)
    # the default bracket (1.5 points) refuses the 2-point gaps of negative LS (0.88 - 0.90) and of every
    # family between 0.86 and 0.89 .. 0.90: nothing is read at 0.89 except on measured points
    strict = matched_comparison(rows, targets, drops=[0.01])
    assert strict[0]["n"] == 0 and strict[0]["unread_a"] == [0, 1, 2] and strict[0]["unread_b"] == []
    assert strict[2]["n"] == 3 and strict[2]["verdict"] == "no difference shown"  # MID and BiDO measured at 0.89


def test_matched_verdict_and_words():
    assert matched_verdict(0.01, -0.2, 3, "A", "B") == "A more private"
    assert matched_verdict(0.01, 0.2, 3, "A", "B") == "B more private"
    assert matched_verdict(0.2, -0.1, 3, "A", "B") == "no difference shown"
    assert matched_verdict(None, 0.3, 1, "A", "B") == "not measured"
    rows, targets = _study()
    blocks = matched_blocks(matched_results(rows, targets, drops=[0.01], max_gap=0.05))
    assert blocks[0] == ("h2", "Defenses at matched utility") and len(blocks[2][2]) == 3
    assert "Holm's method across the 3 comparisons" in blocks[1][1] and "2.0 points apart" not in blocks[1][1]
    text = blocks[3][1]
    assert "negative LS more private than MID (attack Acc@1 negative LS - MID = -14.5 points" in text
    assert "negative LS vs BiDO at a cost of 1.0 points (-1.2 points, CI [" in text
    assert "; no difference shown (could detect ±" in text
    assert matched_blocks(matched_results(rows, targets[:4], drops=[0.01])) == []  # one family: no comparison
    assert "no matched-utility" in matched_sentence([])


def _bracket_study(val: bool = True):
    """Undefended at 0.90 (attack 0.80); family A measured at 0.88 only (a 2-point gap below the
    undefended target), family B at 0.89 (a 1-point gap) and 0.87; per seed s attack values shift by s/100."""
    targets = [TargetEntry(name="undefended", alpha=0.0),
               TargetEntry(name="a1", alpha=-0.05),
               TargetEntry(name="b1", alpha=0.0, set={"defense": {"kind": "mid", "beta": 0.01}}),
               TargetEntry(name="b2", alpha=0.0, set={"defense": {"kind": "mid", "beta": 0.1}}, added_after_attacks=True)]
    rows = []
    for s in range(3):
        for name, acc, attack in [("undefended", 0.90, 0.80), ("a1", 0.88, 0.20 + 0.01 * s),
                                  ("b1", 0.89, 0.50), ("b2", 0.87, 0.40)]:
            rows.append({"name": name, "seed": s, "attack_acc1": attack, "test_acc": acc - 0.1,
                         "val_acc": acc if val else None})
    return rows, targets


def test_matched_comparison_refuses_to_read_outside_a_measured_bracket():
    # a 2-point gap is not read at the default 1.5 points, a 1-point gap is
    assert interpolate([(0.88, 0.2), (0.90, 0.8)], 0.895, max_gap=0.015) is None
    assert interpolate([(0.89, 0.5), (0.90, 0.8)], 0.895, max_gap=0.015) == pytest.approx(0.65)
    assert interpolate([(0.88, 0.2), (0.90, 0.8)], 0.88, max_gap=0.015) == pytest.approx(0.2)  # on a point
    assert interpolate([(0.88, 0.2), (0.90, 0.8)], 0.895, max_gap=0.025) == pytest.approx(0.65)
    rows, targets = _bracket_study()
    half, two = matched_comparison(rows, targets, drops=[0.005, 0.02])  # levels 0.895 and 0.88 (validation)
    assert half["utility"] == "val_acc" and half["max_gap"] == 0.015
    assert (half["n"], half["unread_a"], half["unread_b"], half["verdict"]) == (0, [0, 1, 2], [], "not measured")
    # at 0.88 negative LS sits on its measured point, MID between 0.87 and 0.89 (2 points apart): not read
    assert (two["n"], two["unread_a"], two["unread_b"]) == (0, [], [0, 1, 2])
    wide = matched_comparison(rows, targets, drops=[0.005], max_gap=0.025)[0]
    # negative LS at 0.895: 0.2 + 0.01 s + 0.75 (0.8 - 0.2 - 0.01 s) = 0.65 + 0.0025 s
    assert wide["n"] == 3 and wide["a_values"] == pytest.approx([0.65 + 0.0025 * s for s in range(3)])
    assert wide["b_values"] == pytest.approx([0.65] * 3)
    # without a validation accuracy on every row, the test accuracy is the axis (levels 0.795 and 0.78)
    rows[0]["val_acc"] = None
    assert matched_comparison(rows, targets, drops=[0.005])[0]["utility"] == "test_acc"


def test_holm_can_withdraw_a_verdict_the_unadjusted_interval_would_give():
    # A and B measured on the same points: at cost 0 both read the undefended target (difference 0, p = 1),
    # at cost 1 point A - B = 2, 3, 4 points: t = 0.03 / (0.01 / sqrt 3) = 5.196, p = 1 - sqrt(27 / 29) = 0.0351,
    # interval 3 +- 4.3027 * 1 / sqrt 3 = [0.5, 5.5] points excludes 0
    targets = [TargetEntry(name="undefended", alpha=0.0), TargetEntry(name="a", alpha=-0.05),
               TargetEntry(name="b", alpha=0.0, set={"defense.kind": "mid", "defense.beta": 0.1})]
    rows = [{"name": n, "seed": s, "test_acc": acc, "attack_acc1": att} for s in range(3)
            for n, acc, att in (("undefended", 0.90, 0.8), ("a", 0.89, 0.52 + 0.01 * s), ("b", 0.89, 0.5))]
    alone = matched_comparison(rows, targets, drops=[0.01])[0]
    assert alone["p"] == pytest.approx(1 - math.sqrt(27 / 29), rel=1e-6) and alone["ci"][0] > 0
    assert alone["holm_tests"] == 1 and alone["verdict"] == "MID more private"
    zero, one = matched_comparison(rows, targets, drops=[0.0, 0.01])
    assert zero["p"] == 1.0 and one["p_holm"] == pytest.approx(2 * one["p"]) and one["ci"][0] > 0
    assert one["verdict"] == "no difference shown"


def test_post_hoc_grid_points_are_reported_with_and_without():
    rows, targets = _bracket_study()
    res = matched_results(rows, targets, drops=[0.02], max_gap=0.025)
    assert res["post_hoc"] == ["b2"]
    assert res["matched"][0]["n"] == 3  # MID read between 0.87 (post hoc) and 0.89
    assert res["matched_without_post_hoc"][0]["n"] == 0  # below MID's lowest measured point without it
    blocks = matched_blocks(res)
    assert blocks[2][1][-1] == "verdict without post-hoc points" and blocks[2][2][0][-1] == "not measured"
    assert "added after attack results were seen: b2" in blocks[4][1]
    assert ("negative LS vs MID at a cost of 2.0 points: negative LS more private with them, not measured without"
            in blocks[4][1])
    assert "matched_without_post_hoc" not in matched_results(rows, targets[:3], drops=[0.02])


def test_report_config_checks_matched_drops():
    assert ReportConfig().matched_drops == [0.005, 0.01, 0.02, 0.04]
    with pytest.raises(ValueError, match="matched_drops"):
        ReportConfig(matched_drops=[1.5])
    assert ReportConfig().post_hoc_drops == []
    with pytest.raises(ValueError, match="post_hoc_drops must be costs"):
        ReportConfig(post_hoc_drops=[-0.1])
    with pytest.raises(ValueError, match=r"repeats costs of report.matched_drops: \[0.02\]"):
        ReportConfig(matched_drops=[0.01, 0.02], post_hoc_drops=[0.02, 0.05])


def test_post_hoc_costs_get_their_own_table_and_holm_and_leave_the_main_one_alone():
    # the hand-computed case above: alone at 1 point, MID more private (p 0.0351, one test); as a post-hoc
    # cost beside a main table at cost 0, it keeps its own single-test Holm and the main table is unchanged
    targets = [TargetEntry(name="undefended", alpha=0.0), TargetEntry(name="a", alpha=-0.05),
               TargetEntry(name="b", alpha=0.0, set={"defense.kind": "mid", "defense.beta": 0.1})]
    rows = [{"name": n, "seed": s, "test_acc": acc, "attack_acc1": att} for s in range(3)
            for n, acc, att in (("undefended", 0.90, 0.8), ("a", 0.89, 0.52 + 0.01 * s), ("b", 0.89, 0.5))]
    res = matched_results(rows, targets, drops=[0.0], post_hoc_drops=[0.01])
    assert res["matched"] == matched_results(rows, targets, drops=[0.0])["matched"]
    (late,) = res["matched_post_hoc_costs"]
    assert late["drop"] == 0.01 and late["holm_tests"] == 1
    assert late["p_holm"] == pytest.approx(1 - math.sqrt(27 / 29), rel=1e-6) and late["verdict"] == "MID more private"
    text = [b[1] for b in matched_blocks(res) if b[0] == "p"]
    assert any("Cost levels chosen after the table above was read (1.0 points" in t for t in text)
    assert any("at a cost of 1.0 points: MID more private" in t for t in text)
    assert "matched_post_hoc_costs" not in matched_results(rows, targets, drops=[0.0])


def _control_study():
    """Undefended (val 0.90, attack 0.80); negative LS at val 0.885 (attack 0.30 + s / 100); a control family
    'train less (epochs)' measured at 0.89 (0.70) and 0.88 (0.60), one point apart; 'narrower model' only at
    0.86 (0.50): a 4-point gap to the undefended target. delta_eval on the first control family only."""
    targets = [TargetEntry(name="undefended", alpha=0.0), TargetEntry(name="neg", alpha=-0.05),
               TargetEntry(name="short1", alpha=0.0, set={"epochs": 20}, family="train less (epochs)"),
               TargetEntry(name="short2", alpha=0.0, set={"epochs": 10}, family="train less (epochs)"),
               TargetEntry(name="narrow", alpha=0.0, set={"model.width": 8}, family="narrower model"),
               TargetEntry(name="mid", alpha=0.0, set={"defense.kind": "mid"}, family="MID (sampling)")]
    rows = []
    for s in range(3):
        for name, acc, attack, delta in [("undefended", 0.90, 0.80, 0.8), ("neg", 0.885, 0.30 + 0.01 * s, 2.0),
                                         ("short1", 0.89, 0.70, 1.0), ("short2", 0.88, 0.60, 1.2),
                                         ("narrow", 0.86, 0.50, None), ("mid", 0.87, 0.4, None)]:
            rows.append({"name": name, "seed": s, "val_acc": acc, "test_acc": acc - 0.02, "attack_acc1": attack,
                         "delta_eval": delta, "kes_test": None})
    return rows, targets


def test_control_comparison_by_hand():
    from lsmia_ext.experiment.controls import control_comparison, control_families, negative_entries

    rows, targets = _control_study()
    assert control_families(targets) == ["train less (epochs)", "narrower model"]  # the MID label is no control
    assert [t.name for t in negative_entries(targets)] == ["neg"]
    short, narrow = control_comparison(rows, targets)
    # x = 0.885, halfway between 0.88 (0.60) and 0.89 (0.70): 0.65; differences -0.35, -0.34, -0.33
    assert (short["entry"], short["family"], short["utility"]) == ("neg", "train less (epochs)", "val_acc")
    assert short["x"] == pytest.approx([0.885] * 3) and short["family_values"] == pytest.approx([0.65] * 3)
    assert short["diffs"] == pytest.approx([-0.35, -0.34, -0.33])
    half = t_critical(2) * 0.01 / math.sqrt(3)
    assert short["ci"] == pytest.approx([-0.34 - half, -0.34 + half])
    assert short["verdict"] == "negative LS more private than an equally accurate train less (epochs) model"
    assert short["detectable_effect"] is not None and short["detectable_effect"] > 0
    # delta_eval read the same way, without a monotone fit: 2.0 - (1.2 + 1.0) / 2 = 0.9 on every seed
    assert short["secondary"]["delta_eval"]["diffs"] == pytest.approx([0.9] * 3)
    assert short["secondary"]["kes_test"]["n"] == 0
    # the narrower model's only bracket around 0.885 is 0.86 .. 0.90, 4 points wide: not measured
    assert (narrow["n"], narrow["unread"], narrow["verdict"]) == (0, [0, 1, 2], "not measured")
    # control families are families of the matched table too
    fams = {e["b"] for e in matched_comparison(rows, targets, drops=[0.01])} | \
           {e["a"] for e in matched_comparison(rows, targets, drops=[0.01])}
    assert {"train less (epochs)", "narrower model", "negative LS"} <= fams


def test_control_report_section():
    from lsmia_ext.experiment.controls import control_comparison
    from lsmia_ext.experiment.controls_report import controls_blocks

    rows, targets = _control_study()
    for r in rows:  # make the control family's difference undecided: seed 1 of negative LS leaks more
        if r["name"] == "neg" and r["seed"] == 1:
            r["attack_acc1"] = 0.95
    entries = control_comparison(rows, targets)
    blocks = controls_blocks(entries)
    assert blocks[0] == ("h2", "Is it more than a weaker model?")
    row = blocks[2][2][0]
    assert row[:3] == ["neg (alpha -0.05)", "train less (epochs)", "3 of 3"]
    # 3 seeds this spread apart could not detect even 100 points (an accuracy's whole range): said so
    assert entries[0]["detectable_effect"] > 1
    assert row[-1] == "no difference shown (not even a 100-point difference is detectable at 80 % power)"
    assert blocks[2][2][1][2] == "0 of 3" and blocks[2][2][1][-1] == "not measured"
    assert "validation accuracy" in blocks[1][1] and "1.5 points apart" in blocks[1][1]
    assert controls_blocks([]) == []


def test_family_label_checks_and_setting():
    from lsmia_ext.experiment.tradeoff import defense_of, setting_of

    short = TargetEntry(name="short", alpha=0.0, set={"epochs": 20}, family="train less (epochs)")
    assert defense_of(short) == "train less (epochs)" and setting_of(short) == "epochs 20"
    for bad in ("none", "positive LS", " "):
        with pytest.raises(ValueError, match="family"):
            TargetEntry(name="x", alpha=0.0, family=bad)
    assert ReportConfig().max_gap == 0.015
    with pytest.raises(ValueError, match="max_gap"):
        ReportConfig(max_gap=0.0)


@pytest.mark.parametrize("study", ["study-split1", "defenses/sweep-2026-11-29"])
def test_old_results_of_docs_still_read(study):
    """results.json files written before the validation split, the control families and the C2 split: the
    comparisons recompute from their rows (test accuracy as the axis) and their stored claims render."""
    from lsmia_ext.experiment.claims_report import ablation_summary, claims_table, verdict_sentence
    from lsmia_ext.experiment.controls import comparisons
    from lsmia_ext.experiment.stats import claim_statistics

    path = Path(__file__).resolve().parents[1] / "docs" / study
    results = json.loads((path / "results.json").read_text())
    exp = results["settings"]["experiment"]
    targets = [TargetEntry(**t) for t in exp["targets"]]
    compared = comparisons(results["rows"], targets, ReportConfig(**exp.get("report", {})))
    assert compared["controls"] == [] and "matched_without_post_hoc" not in compared
    assert all(e["utility"] == "test_acc" for e in compared["matched"])
    assert (len(compared["matched"]) > 0) == study.startswith("defenses")
    old = ablation_summary(path)["claims"]  # stored claims of the older format: C2 in one piece
    header, body = claims_table(old, {"attack_acc1"})
    assert [b[0] for b in body] == [c["claim"] for c in old] and "C2" in verdict_sentence(old)
    new = claim_statistics(results["rows"], exp["targets"])
    assert [c["claim"] for c in new if c["claim"].startswith("C2")][:2] in (["C2a", "C2b"], ["C2.1a", "C2.1b"])


def test_the_committed_defense_comparison_recomputes_from_its_rows():
    """docs/defenses/results.json (5 seeds, validation axis): its matched table, the table without post-hoc
    grid points, the post-hoc cost and the control claims follow from its rows by the code as it is."""
    from lsmia_ext.experiment.controls import comparisons

    results = json.loads((Path(__file__).resolve().parents[1] / "docs" / "defenses" / "results.json").read_text())
    exp = results["settings"]["experiment"]
    compared = comparisons(results["rows"], [TargetEntry(**t) for t in exp["targets"]], ReportConfig(**exp["report"]))
    for key in ("matched", "matched_without_post_hoc", "matched_post_hoc_costs", "controls"):
        mine, stored = compared[key], results[key]
        assert len(mine) == len(stored) > 0, key
        for a, b in zip(mine, stored):
            assert (a["verdict"], a["n"]) == (b["verdict"], b["n"]), key
            assert a["mean"] == pytest.approx(b["mean"], abs=1e-9), key
    assert all(e["utility"] == "val_acc" for e in compared["matched"])


def test_a_table_with_nothing_measured_is_one_sentence():
    from lsmia_ext.experiment.matched_report import matched_blocks

    entries = [{"drop": d, "a": "negative LS", "b": "train less", "verdict": "not measured", "max_gap": 0.015}
               for d in (0.005, 0.01)]
    blocks = matched_blocks({"matched": entries})
    assert [b[0] for b in blocks] == ["h2", "p"]
    assert "Not measured at any cost (0.5, 1.0 points)" in blocks[1][1]


def test_control_verdict_names_the_family_once():
    from lsmia_ext.experiment.controls import control_verdict

    assert control_verdict([-0.3, -0.1], 3, "narrower model") == \
        "negative LS more private than an equally accurate narrower model"
    assert control_verdict([-0.3, -0.1], 3, "train less") == "negative LS more private than an equally accurate train less model"
    assert control_verdict([-0.3, 0.1], 3, "train less") == "no difference shown"

