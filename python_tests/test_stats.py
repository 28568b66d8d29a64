"""Paired claim statistics (experiment/stats.py): the t interval against hand-computed values, the
verdict logic, claim discovery from the targets, and the claims report blocks."""
from __future__ import annotations

import math

import pytest

from lsmia_ext.experiment import stats
from lsmia_ext.experiment.claims_report import claims_table, verdict_sentence
from lsmia_ext.experiment.stats import (claim_statistics, find_claims, paired_interval, t_critical,
                                        verdict_of)


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
    assert paired_interval([0.3]) == {"n": 1, "mean": 0.3, "sd": None, "ci": None}
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


def _rows(values: dict[str, list[float | None]]) -> list[dict]:
    return [{"name": n, "alpha": next(t["alpha"] for t in TARGETS if t["name"] == n), "seed": s,
             "attack_acc1": v, "test_acc": 0.9, "fid": None}
            for n, vals in values.items() for s, v in enumerate(vals)]


def test_claim_statistics_pair_by_seed_and_skip_missing():
    rows = _rows({"ls_pos": [0.60, 0.50, 0.70], "hard": [0.65, 0.61, 0.60], "ls_neg": [0.54, 0.51, None]})
    c1, c2 = claim_statistics(rows, TARGETS[:3])
    assert c1["metrics"]["attack_acc1"]["diffs"] == pytest.approx([-0.05, -0.11, 0.10])
    assert c1["verdict"] == "inconclusive"
    assert c2["metrics"]["attack_acc1"]["seeds"] == [0, 1]  # seed 2 has no ls_neg number
    assert c2["verdict"] == "reproduced"  # -11 and -10 points: even t(0.975, 1) keeps the interval below 0
    assert c1["metrics"]["test_acc"]["mean"] == pytest.approx(0.0)
    assert "fid" not in c1["metrics"]  # no number on either side: left out
    header, body = claims_table([c1, c2], {"attack_acc1"})
    assert body[0][3] == "s0: -5.0, s1: -11.0, s2: +10.0" and body[1][-1] == "reproduced"
    assert "C2 (ls_neg (alpha -0.05) - hard (alpha 0), paper: attack Acc@1 lower): reproduced" in verdict_sentence([c1, c2])
    assert verdict_sentence([]).startswith("No claim to test")


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
