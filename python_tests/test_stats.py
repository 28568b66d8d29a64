"""Paired claim statistics (experiment/stats.py): the t interval against hand-computed values, the
verdict logic, claim discovery from the targets, and the claims report blocks."""
from __future__ import annotations

import math

import pytest

from lsmia_ext.experiment import stats
from lsmia_ext.experiment.claims_report import claims_table, verdict_sentence
from lsmia_ext.errors import UserInputError
from lsmia_ext.experiment.stats import (PAPER_COST, claim_statistics, cost_verdict, detectable_effect, find_claims,
                                        holm, paired_interval, paired_p_value, seeds_needed, t_critical, verdict_of)


def test_t_interval_matches_hand_computation():
    # diffs -11, -8, -9 points: mean -9.333, sd sqrt(((-5/3)^2 + (4/3)^2 + (1/3)^2) / 2) = 1.5275,
    # t(0.975, 2) = 4.3027, half-width 4.3027 * 1.5275 / sqrt(3) = 3.7946
    r = paired_interval([-0.11, -0.08, -0.09])
    assert r["n"] == 3
    assert r["mean"] == pytest.approx(-0.093333, abs=1e-6)
    assert r["sd"] == pytest.approx(0.0152753, abs=1e-6)
    assert r["ci"] == pytest.approx([-0.131279, -0.055387], abs=1e-5)


def test_t_critical_values_and_fallback(monkeypatch):
    assert t_critical(1) == pytest.approx(12.7062, abs=1e-3)
    assert t_critical(4) == pytest.approx(2.7764, abs=1e-3)
    assert t_critical(200) == pytest.approx(1.97190, abs=1e-3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_critical(0)
    import builtins
    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert t_critical(2) == pytest.approx(4.3027, abs=1e-3)  # table
    assert t_critical(40) == pytest.approx(2.02108, abs=1e-3)  # expansion beyond the table
    assert t_critical(200) == pytest.approx(1.97190, abs=1e-3)


@pytest.mark.parametrize("diffs, direction, expected", [
    ([-0.11, -0.08, -0.09], -1, "reproduced"),      # clear drop, paper says lower
    ([-0.11, -0.08, -0.09], 1, "reversed"),         # clear drop, paper says higher
    ([-0.05, -0.11, 0.10], 1, "inconclusive"),      # interval straddles 0
    ([0.2], 1, "inconclusive (1 seed)"),            # no spread from one seed, however large
    ([], 1, "no data"),
])
def test_verdict_logic(diffs, direction, expected):
    r = paired_interval(diffs)
    assert verdict_of(r["ci"], direction, r["n"]) == expected


def test_one_seed_has_no_interval_and_bad_input_is_refused():
    assert paired_interval([0.3]) == {"n": 1, "mean": 0.3, "sd": None, "ci": None, "p": None,
                                      "detectable_effect": None}
    with pytest.raises(ValueError, match="finite"):
        paired_interval([0.1, math.nan])
    with pytest.raises(ValueError, match="direction"):
        verdict_of([0.1, 0.2], 0, 2)


TARGETS = [{"name": "ls_pos", "alpha": 0.1, "set": {}}, {"name": "hard", "alpha": 0.0, "set": {}},
           {"name": "ls_neg", "alpha": -0.05, "set": {}},
           {"name": "mid", "alpha": 0.0, "set": {"defense": {"kind": "mid", "beta": 0.01}}},
           {"name": "hard_nowd", "alpha": 0.0, "set": {"optim.weight_decay": 0.0}},
           {"name": "neg_nowd", "alpha": -0.05, "set": {"optim": {"weight_decay": 0.0}}},  # nested = dotted
           {"name": "pos_orphan", "alpha": 0.2, "set": {"epochs": 9}}]


def test_claims_pair_each_alpha_with_the_baseline_of_the_same_recipe():
    claims = find_claims(TARGETS)
    assert [(c["claim"], c["name"], c["baseline"], c["direction"]) for c in claims] == [
        ("C1", "ls_pos", "hard", 1), ("C2.1", "ls_neg", "hard", -1), ("C2.2", "neg_nowd", "hard_nowd", -1)]
    assert find_claims([{"name": "hard", "alpha": 0.0}]) == []  # no pair: no claim, no error
    # a control family's hard-label entry (same recipe, but labelled) is never a claim's baseline
    control = {"name": "hard_short", "alpha": 0.0, "set": {}, "family": "train less (epochs)"}
    assert [c["baseline"] for c in find_claims([control, *TARGETS[:3]])] == ["hard", "hard"]
    assert find_claims([control, TARGETS[2]]) == []


def _rows(values: dict[str, list[float | None]]) -> list[dict]:
    return [{"name": n, "alpha": next(t["alpha"] for t in TARGETS if t["name"] == n), "seed": s,
             "attack_acc1": v, "test_acc": 0.9, "fid": None}
            for n, vals in values.items() for s, v in enumerate(vals)]


def test_claim_statistics_pair_by_seed_and_skip_missing():
    rows = _rows({"ls_pos": [0.60, 0.50, 0.70], "hard": [0.65, 0.61, 0.60], "ls_neg": [0.54, 0.51, None]})
    for r in rows:  # test accuracy of ls_neg known only on seed 0
        r["test_acc"] = None if r["name"] == "ls_neg" and r["seed"] else r["test_acc"]
    c1, c2, c2b = claim_statistics(rows, TARGETS[:3])
    assert c1["metrics"]["attack_acc1"]["diffs"] == pytest.approx([-0.05, -0.11, 0.10])
    assert c1["verdict"] == "inconclusive"
    assert c2["metrics"]["attack_acc1"]["seeds"] == [0, 1]  # seed 2 has no ls_neg number
    assert c2["verdict"] == "reproduced"  # -11 and -10 points: even t(0.975, 1) keeps the interval below 0
    assert (c2["claim"], c2["part"], c2b["claim"], c2b["part"]) == ("C2a", "attack drop", "C2b", "small utility cost")
    assert c1["metrics"]["test_acc"]["mean"] == pytest.approx(0.0)
    assert "fid" not in c1["metrics"]  # no number on either side: left out
    header, body = claims_table([c1, c2, c2b], {"attack_acc1"})
    assert body[0][3] == "s0: -5.0, s1: -11.0, s2: +10.0" and body[1][-1] == "reproduced"
    # C1: diffs -5, -11, +10 points, sd 10.82 points: the detectable effect stands beside "inconclusive"
    assert c1["detectable_effect"] == pytest.approx(detectable_effect(c1["metrics"]["attack_acc1"]["sd"], 3))
    assert body[0][-1] == f"inconclusive (could detect ±{100 * c1['detectable_effect']:.1f} points at 80 % power)"
    assert body[2][2] == "cost below 3.5 points" and body[2][-1] == "inconclusive (1 seed)"  # equal test accs
    text = verdict_sentence([c1, c2, c2b])
    assert "C2a (ls_neg (alpha -0.05) - hard (alpha 0), paper: attack Acc@1 lower): reproduced" in text
    assert "below the paper's 3.5 points" in text
    assert verdict_sentence([]).startswith("No claim to test")


def test_a_family_of_claims_is_holm_adjusted_and_a_single_claim_is_not():
    # two negative-alpha claims (C2.1a: ls_neg vs hard; C2.2a: neg_nowd vs hard_nowd) form a family
    rows = _rows({"hard": [0.80, 0.82, 0.79, 0.81], "ls_neg": [0.70, 0.73, 0.69, 0.72],
                  "hard_nowd": [0.80, 0.82, 0.79, 0.81], "neg_nowd": [0.78, 0.83, 0.76, 0.80],
                  "ls_pos": [0.81, 0.80, 0.80, 0.83]})
    claims = claim_statistics(rows, TARGETS[:3] + TARGETS[4:6])
    by = {c["claim"]: c for c in claims}
    p1, p2 = by["C2.1a"]["metrics"]["attack_acc1"]["p"], by["C2.2a"]["metrics"]["attack_acc1"]["p"]
    assert p1 < 0.05 / 2 and p2 > 0.05  # -9.5 points every seed; -1.0 with seed 1 the other way
    assert [by["C2.1a"]["p_holm"], by["C2.2a"]["p_holm"]] == pytest.approx(holm([p1, p2]))
    assert by["C2.1a"]["p_holm"] == pytest.approx(2 * p1) and by["C2.1a"]["holm_tests"] == 2
    assert (by["C2.1a"]["verdict"], by["C2.1a"]["verdict_holm"]) == ("reproduced", "reproduced")
    assert by["C2.2a"]["verdict_holm"] == "inconclusive"
    assert "p_holm" not in by["C1"] and "p_holm" not in by["C2.1b"]  # one C1; costs are not adjusted
    _, body = claims_table(claims, {"attack_acc1"})
    assert body[1][-1].endswith(f"Holm-adjusted over 2 tests: p {2 * p1:.3f}, reproduced")
    assert "Holm-adjusted" in verdict_sentence(claims)
    assert stats.holm_verdict("reproduced", 0.06) == "inconclusive"
    assert stats.holm_verdict("reversed", 0.01) == "reversed"


def test_detectable_effect_on_a_hand_computed_case():
    # sd 5 points, 5 seeds: the usual approximation (t(0.975, 4) + t(0.80, 4)) * sd / sqrt(n) with the
    # table values 2.7764 and 0.9410 gives 3.7174 * 0.05 / 2.2361 = 0.08312; the exact noncentral-t effect
    # is a little larger (the approximation ignores the spread of the noncentral t): within 2 %
    approx = (2.7764 + 0.9410) * 0.05 / math.sqrt(5)
    assert approx == pytest.approx(0.083124, abs=1e-5)
    exact = detectable_effect(0.05, 5)
    assert approx < exact < 1.02 * approx
    from scipy.stats import nct, t
    crit, nc = t.ppf(0.975, 4), exact * math.sqrt(5) / 0.05
    assert nct.sf(crit, 4, nc) + nct.cdf(-crit, 4, nc) == pytest.approx(0.80, abs=1e-6)  # power at that effect
    # many seeds: the approximation is near exact (both about 0.5292 sd at n = 30)
    assert detectable_effect(1.0, 30) == pytest.approx((2.04523 + 0.85419) / math.sqrt(30), rel=1e-3)
    assert detectable_effect(0.05, 5, power=0.9) > exact and detectable_effect(0.05, 10) < exact
    assert detectable_effect(None, 5) is None and detectable_effect(0.05, 1) is None
    assert detectable_effect(0.0, 4) == 0.0
    with pytest.raises(UserInputError, match="sd"):
        detectable_effect(-0.1, 4)
    with pytest.raises(UserInputError, match="power"):
        detectable_effect(0.1, 4, power=1.5)


def test_detectable_effect_at_the_first_holm_step():
    # 9 seeds, sd 1 (effects in units of sd): at 5 % two-sided the exact effect is 1.0670 sd, the paired-t
    # value power tables (G*Power: n 9, alpha 0.05, power 0.8) give as d = 1.07
    assert stats.detectable_effect_holm(1.0, 9, 1) == pytest.approx(1.0670, abs=1e-4)
    # m = 6 tests: Holm's first step tests at 0.05 / 6; t(1 - 0.05 / 12, 8) = 3.4789, t(0.8, 8) = 0.8889, so the
    # usual approximation is (3.4789 + 0.8889) / 3 = 1.4559 sd; the exact noncentral-t effect is 1.4917 sd
    approx = (3.4789 + 0.8889) / 3
    exact = stats.detectable_effect_holm(1.0, 9, 6)
    assert approx < exact < 1.03 * approx and exact == pytest.approx(1.4917, abs=1e-4)
    from scipy.stats import nct, t
    crit, nc = t.ppf(1 - 0.05 / 12, 8), exact * 3
    assert nct.sf(crit, 8, nc) + nct.cdf(-crit, 8, nc) == pytest.approx(0.80, abs=1e-6)  # power at that effect
    assert stats.detectable_effect_holm(0.05, 9, 6) == pytest.approx(0.05 * exact)  # scales with sd
    assert stats.detectable_effect_holm(0.05, 9, 0) is None and stats.detectable_effect_holm(None, 9, 6) is None
    with pytest.raises(UserInputError, match="tests"):
        stats.detectable_effect_holm(0.05, 9, -1)


def test_a_holm_family_reports_power_at_its_adjusted_level():
    # two negative alphas: C2.1a, C2.2a form a family of 2; each carries the effect at 0.05 / 2 and the
    # report quotes it beside the Holm verdict, the unadjusted one beside the unadjusted verdict
    targets = TARGETS[1:3] + [{"name": "ls_neg2", "alpha": -0.1, "set": {}}]
    rows = [{"name": n, "alpha": a, "seed": s, "attack_acc1": 0.5 + d * (s % 2 - 0.5), "test_acc": 0.9}
            for s in range(4) for n, a, d in (("hard", 0.0, 0.0), ("ls_neg", -0.05, 0.02), ("ls_neg2", -0.1, 0.04))]
    claims = [c for c in claim_statistics(rows, targets) if c["claim"].endswith("a")]
    for c in claims:
        sd = c["metrics"]["attack_acc1"]["sd"]
        assert c["holm_tests"] == 2 and c["verdict_holm"] == "inconclusive"
        assert c["detectable_effect_holm"] == pytest.approx(detectable_effect(sd, 4, confidence=0.975))
        assert c["detectable_effect_holm"] > c["detectable_effect"]
    _, body = claims_table(claims, {"attack_acc1"})
    c = claims[0]
    assert body[0][-1] == (f"inconclusive (could detect ±{100 * c['detectable_effect']:.1f} points at 80 % power, "
                           f"unadjusted); Holm-adjusted over 2 tests: p {c['p_holm']:.3f}, inconclusive (could detect "
                           f"±{100 * c['detectable_effect_holm']:.1f} points at 80 % power, at Holm's first step, "
                           "level 0.05/2)")


def test_seeds_needed_inverts_the_detectable_effect():
    assert seeds_needed(0.05, 0.0841) == 5 and seeds_needed(0.05, 0.0840) == 6  # detectable(5) = 0.08410
    # normal approximation: ((1.960 + 0.8416) * sd / effect)^2 = 196.2 seeds; t quantiles ask for a few more
    assert 196 < seeds_needed(0.05, 0.01) <= 200
    assert seeds_needed(0.0, 0.01) == 2
    with pytest.raises(UserInputError, match="effect"):
        seeds_needed(0.05, 0.0)


def test_p_value_and_holm_by_hand():
    # diffs -11, -8, -9 points: t = 9.3333 / (1.5275 / sqrt 3) = 10.583; with 2 degrees of freedom
    # P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2 = 0.004405, so p = 0.008810
    r = paired_interval([-0.11, -0.08, -0.09])
    tt = 0.093333 / (0.0152753 / math.sqrt(3))
    assert r["p"] == pytest.approx(1 - tt / math.sqrt(tt ** 2 + 2), rel=1e-4)
    assert r["p"] == pytest.approx(0.008810, abs=2e-6)
    assert paired_p_value(0.1, 0.0, 3) == 0.0 and paired_p_value(0.0, 0.0, 3) == 1.0
    # Holm, m = 4: sorted 0.005, 0.01, 0.03, 0.04 -> 4 * 0.005, 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.02, None, 0.5]) == [pytest.approx(0.04), None, pytest.approx(0.5)]  # None takes no part
    assert holm([0.5, 0.6]) == [1.0, 1.0] and holm([]) == []  # capped at 1, kept non-decreasing
    with pytest.raises(UserInputError, match="p-values"):
        holm([1.5])


@pytest.mark.parametrize("costs, expected", [
    ([0.02, 0.02, 0.015], "reproduced"),    # mean 1.83 points, CI [1.1, 2.6] below 3.5
    ([0.06, 0.07, 0.065], "reversed"),      # CI [5.3, 7.7] above 3.5
    ([0.02, 0.05, 0.03], "inconclusive"),   # CI [-0.5, 7.2] holds 3.5
])
def test_cost_half_of_c2(costs, expected):
    rows = [{"name": n, "alpha": a, "seed": s, "attack_acc1": 0.5, "test_acc": 0.90 - (c if a else 0.0)}
            for s, c in enumerate(costs) for n, a in (("hard", 0.0), ("ls_neg", -0.05))]
    c2a, c2b = claim_statistics(rows, TARGETS[1:3])
    assert c2b["metrics"]["test_acc_cost"]["diffs"] == pytest.approx(costs)  # baseline - entry, positive
    assert c2b["threshold"] == PAPER_COST == 0.035 and "3.5 points" in c2b["threshold_source"]
    assert c2b["verdict"] == expected == cost_verdict(c2b["metrics"]["test_acc_cost"]["ci"], 3)
    assert c2a["verdict"] == "inconclusive"  # equal attack accuracies


def test_several_negative_alphas_split_each_claim():
    targets = TARGETS[1:3] + [{"name": "ls_neg2", "alpha": -0.1, "set": {}}]
    rows = [{"name": n, "alpha": 0.0, "seed": 0, "attack_acc1": 0.5, "test_acc": 0.9} for n in ("hard", "ls_neg", "ls_neg2")]
    assert [c["claim"] for c in claim_statistics(rows, targets)] == ["C2.1a", "C2.1b", "C2.2a", "C2.2b"]


def test_one_seed_study_is_inconclusive():
    (c1,) = claim_statistics(_rows({"ls_pos": [0.9], "hard": [0.1]}), TARGETS[:2])
    assert c1["verdict"] == "inconclusive (1 seed)" and c1["metrics"]["attack_acc1"]["ci"] is None
    assert claims_table([c1], {"attack_acc1"})[1][0][5] == "undefined (1 seed)"


def test_paired_metrics_include_the_verdict_metric():
    assert stats.VERDICT_METRIC in stats.PAIRED_METRICS


def test_ablation_summary_recomputes_claims_of_an_older_results_json(tmp_path):
    from lsmia_ext.experiment.claims_report import ablation_blocks, ablation_summary
    from lsmia_ext.runio import write_json

    rows = _rows({"ls_pos": [0.60, 0.50], "hard": [0.65, 0.61]})
    write_json(tmp_path / "results.json", {"rows": rows, "settings": {"experiment": {
        "targets": TARGETS[:2], "seeds": [0, 1], "data": {"name": "fashion-mnist", "private_classes": [0, 1]}}}})
    ablation = ablation_summary(tmp_path)
    assert [c["claim"] for c in ablation["claims"]] == ["C1"] and ablation["seeds"] == [0, 1]
    blocks = ablation_blocks(ablation, {"attack_acc1"})
    assert blocks[0] == ("h2", "Ablation: prior without the private domain")
    assert blocks[2][2][0][3] == "s0: -5.0, s1: -11.0"
    with pytest.raises(FileNotFoundError, match="finished `lsmia experiment`"):
        ablation_summary(tmp_path / "nope")
    write_json(tmp_path / "bad" / "results.json", {"rows": []})
    with pytest.raises(ValueError, match="lacks 'settings'"):
        ablation_summary(tmp_path / "bad")


def test_seeds_for_holm_is_the_seed_count_at_holms_first_step():
    from scipy.stats import nct, t

    from lsmia_ext.experiment.stats import detectable_effect_holm, seeds_for_holm

    # the hand case above: 9 seeds detect 1.4917 sd at Holm's first step of 6 tests (0.05 / 6), 8 seeds do not
    assert seeds_for_holm(1.0, 1.4918, 6) == 9 and seeds_for_holm(1.0, 1.4916, 6) == 10
    assert detectable_effect_holm(1.0, 8, 6) > 1.4918

    def power(n, effect, sd, tests):  # two-sided paired t at 0.05 / tests, straight from the noncentral t
        crit, nc = t.ppf(1 - 0.05 / (2 * tests), n - 1), effect * math.sqrt(n) / sd
        return nct.sf(crit, n - 1, nc) + nct.cdf(-crit, n - 1, nc)

    # 10 points at a 5-point spread, 5 comparisons: the fewest seeds with 80 % power at 0.01
    n = seeds_for_holm(0.05, 0.10, 5)
    assert power(n, 0.10, 0.05, 5) >= 0.8 > power(n - 1, 0.10, 0.05, 5)
    assert n > seeds_needed(0.05, 0.10)  # the adjusted level asks for more seeds than 0.05
    assert seeds_for_holm(0.05, 0.10, 1) == seeds_needed(0.05, 0.10)  # one test: no adjustment
    for bad in (0, -1, 2.0, True):
        with pytest.raises(UserInputError, match="tests"):
            seeds_for_holm(0.05, 0.10, bad)
