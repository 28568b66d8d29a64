"""Matched-utility comparison of defenses: isotonic curve, interpolation, paired intervals and verdicts on a
hand-computed three-seed study, report blocks and the trade-off plot with seed spread."""
import math

import pytest

from lsmia_ext.experiment.config import ReportConfig, TargetEntry
from lsmia_ext.experiment.matched import (family_curves, interpolate, isotonic, matched_comparison, matched_verdict,
                                          monotone_curve)
from lsmia_ext.experiment.matched_report import matched_blocks, matched_sentence
from lsmia_ext.experiment.stats import t_critical


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
    entries = matched_comparison(rows, targets, drops=[0.01, 0.05])
    assert [(e["drop"], e["a"], e["b"]) for e in entries[:3]] == [
        (0.01, "negative LS", "MID"), (0.01, "negative LS", "BiDO"), (0.01, "MID", "BiDO")]
    # level 0.89 on every seed: negative LS halfway between (0.88, 0.30 + 0.01 s) and (0.90, 0.80); MID at 0.70
    neg_mid = entries[0]
    assert neg_mid["a_values"] == pytest.approx([0.55, 0.555, 0.56]) and neg_mid["b_values"] == pytest.approx([0.70] * 3)
    assert neg_mid["diffs"] == pytest.approx([-0.15, -0.145, -0.14])
    half = t_critical(2) * 0.005 / math.sqrt(3)
    assert neg_mid["mean"] == pytest.approx(-0.145) and neg_mid["ci"] == pytest.approx([-0.145 - half, -0.145 + half])
    assert neg_mid["verdict"] == "negative LS more private"
    # BiDO at 0.89 is 0.55 + (0.1, -0.1, 0.05): differences straddle 0
    assert entries[1]["diffs"] == pytest.approx([-0.1, 0.105, -0.04]) and entries[1]["verdict"] == "no difference shown"
    # MID - BiDO = 0.15 - noise = (0.05, 0.25, 0.10): positive on every seed, yet the 3-seed interval holds 0
    assert entries[2]["diffs"] == pytest.approx([0.05, 0.25, 0.10]) and entries[2]["ci"][0] < 0 < entries[2]["ci"][1]
    assert entries[2]["verdict"] == "no difference shown"
    far = [e for e in entries if e["drop"] == 0.05]  # level 0.85: below every curve
    assert all(e["n"] == 0 and e["verdict"] == "not reached by both" for e in far)


def test_matched_verdict_and_words():
    assert matched_verdict([-0.2, -0.1], 3, "A", "B") == "A more private"
    assert matched_verdict([0.1, 0.2], 3, "A", "B") == "B more private"
    assert matched_verdict([-0.1, 0.2], 3, "A", "B") == "no difference shown"
    assert matched_verdict(None, 1, "A", "B") == "inconclusive (1 seed)"
    rows, targets = _study()
    blocks = matched_blocks(rows, targets, drops=[0.01])
    assert blocks[0] == ("h2", "Defenses at matched utility") and len(blocks[2][2]) == 3
    text = blocks[3][1]
    assert "negative LS more private than MID (attack Acc@1 negative LS - MID = -14.5 points" in text
    assert "negative LS vs BiDO at a cost of 1.0 points (no difference shown" in text
    assert matched_blocks(rows, targets[:4], drops=[0.01]) == []  # one defense family: no comparison
    assert "no matched-utility" in matched_sentence([])


def test_report_config_checks_matched_drops():
    assert ReportConfig().matched_drops == [0.005, 0.01, 0.02, 0.04]
    with pytest.raises(ValueError, match="matched_drops"):
        ReportConfig(matched_drops=[1.5])
