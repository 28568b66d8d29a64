"""A study attacked by a suite (experiment attack_suite, experiment/adaptive.py): the worst case per
target, its Holm family, the decision rule, and the whole study on digits with a second judge, model
augmentation and a merge of seed shards."""
from __future__ import annotations

import json

import pytest

from conftest import lsmia
from lsmia_ext.config import ConfigError
from lsmia_ext.experiment import load_experiment_config
from lsmia_ext.experiment.adaptive import WORST, decision, holm_over_worst_case, worst_case_rows
from lsmia_ext.experiment.stats import paired_interval


def _row(name, seed, attack, acc):
    return {"name": name, "seed": seed, "attack": attack, "attack_acc1": acc, "val_acc": 0.8}


def test_worst_case_takes_the_highest_acc1_per_target_and_seed_ties_to_the_earlier_attack():
    rows = [_row("hard", 0, "A0", 0.9), _row("hard", 0, "A1", 0.8),
            _row("neg", 0, "A0", 0.4), _row("neg", 0, "A1", 0.55),
            _row("neg", 1, "A0", 0.5), _row("neg", 1, "A1", 0.5),
            _row("gone", 0, "A0", None), _row("gone", 0, "A1", None)]
    worst = worst_case_rows(rows, ["A0", "A1"])
    got = {(r["name"], r["seed"]): (r["attack_acc1"], r["worst_of"]) for r in worst}
    assert got == {("hard", 0): (0.9, "A0"), ("neg", 0): (0.55, "A1"), ("neg", 1): (0.5, "A0"),
                   ("gone", 0): (None, None)}
    assert all(r["attack"] == WORST for r in worst)


def _claim(diffs):
    return {"claim": "C2a", "part": "attack drop", "name": "neg", "baseline": "hard", "verdict": "reproduced",
            "metrics": {"attack_acc1": {"seeds": list(range(len(diffs))), "diffs": diffs, **paired_interval(diffs)}}}


def _control(diffs, family, verdict):
    return {"entry": "neg", "family": family, "verdict": verdict, "seeds": list(range(len(diffs))), "diffs": diffs,
            **paired_interval(diffs)}


def test_worst_case_family_is_holm_adjusted_together():
    stats = {"claims": [_claim([-0.30, -0.35, -0.25, -0.32])],
             "controls": [_control([-0.05, 0.04, -0.10, 0.02], "narrower model", "no difference shown"),
                          _control([-0.06, -0.05, -0.08, -0.04], "train less",
                                   "negative LS more private than an equally accurate train less model")]}
    family = holm_over_worst_case(stats)
    assert [f["comparison"].split()[0] for f in family] == ["C2a", "neg", "neg"]
    ps = [f["p"] for f in family]
    # Holm by hand: sort the p-values, multiply by m, m-1, ..., keep monotone
    order = sorted(range(3), key=lambda i: ps[i])
    expected, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * ps[i]))
        expected[i] = running
    assert [f["p_holm"] for f in family] == pytest.approx(expected)
    for f in family:
        assert f["detectable_effect_holm"] > f["detectable_effect"]  # read at 0.05/3, not 0.05


def test_decision_rule_narrows_when_the_drop_shrinks_or_a_control_reaches_zero():
    first = {"claims": [_claim([-0.35, -0.30, -0.40])], "controls": []}
    holds = {"claims": [_claim([-0.30, -0.28, -0.33])],
             "controls": [_control([-0.2, -0.25, -0.15], "train less", "x")]}
    assert decision("A0", {"A0": first}, holds)["headline"] == "holds under the worst case"
    shrunk = {"claims": [_claim([-0.20, -0.22, -0.25])], "controls": []}
    d = decision("A0", {"A0": first}, shrunk)
    assert d["shrink"] == pytest.approx(0.35 - 0.2233, abs=1e-3) and d["headline"] == "narrows to A0"
    reaching = {"claims": [_claim([-0.30, -0.28, -0.33])],
                "controls": [_control([-0.2, 0.05, -0.1], "narrower model", "no difference shown")]}
    assert decision("A0", {"A0": first}, reaching)["controls_reaching_0"] == ["neg - narrower model"]


SUITE = {"A0": {}, "A1": {"optim.loss": "max_margin", "selection_score": "logit_margin"},
         "A2": {"optim.loss": "max_margin", "selection_score": "logit_margin",
                "augmentation": {"archs": ["small_cnn_w4", "small_cnn_w8"], "sources": ["public", "prior"],
                                 "steps": 20, "prior_samples": 200, "holdout": 50}}}
SETS = ["--set", f"attack_suite={json.dumps(SUITE)}",
        "--set", 'eval_model2={"config": "train-digits-target", "set": {"model": {"name": "small_cnn_wide"}, "seed": 9}}',
        "--set", 'targets=[{"name": "hard", "alpha": 0.0}, {"name": "ls_neg", "alpha": -0.05}]']


@pytest.fixture(scope="module")
def suite_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("adaptive")
    shards = []
    for seeds in ("[0]", "[1]"):
        out = root / f"s{seeds[1]}"
        code, _, err = lsmia("experiment", "--config", "experiment-digits", "--preset", "quick", *SETS,
                             "--set", f"seeds={seeds}", "--out", out)
        assert code == 0, err
        shards.append(out / "results.json")
    merged = root / "merged"
    code, _, err = lsmia("experiment", "--config", "experiment-digits", "--preset", "quick", *SETS,
                         "--set", "seeds=[0,1]", "--merge", *shards, "--out", merged)
    assert code == 0, err
    return root, merged


def test_a_study_takes_a_subset_of_the_adaptive_suite_by_name():
    # issue 29's rule: a study attacked by A0 and the adaptive study's strongest attack only
    sub = load_experiment_config("experiment-digits", preset="quick", overrides={"attack_suite": ["A0", "A3"]})
    full = load_experiment_config("experiment-digits", preset="quick", overrides={"attack_suite": "adaptive"})
    assert list(sub.attack_overrides()) == ["A0", "A3"]
    for attack in ("A0", "A3"):
        assert sub.stages.attack_of("hard", 0, attack) == full.stages.attack_of("hard", 0, attack)
    with pytest.raises(ConfigError, match="allowed: A0, A1-loss, A1, A2, A3"):
        load_experiment_config("experiment-digits", preset="quick", overrides={"attack_suite": ["A0", "A7"]})


def test_suite_study_attacks_every_target_with_every_attack_and_reports_the_worst_case(suite_study):
    root, merged = suite_study
    shard = json.loads((root / "s0" / "results.json").read_text())
    assert [(r["name"], r["attack"]) for r in shard["rows"]] == [
        (n, a) for n in ("hard", "ls_neg") for a in ("A0", "A1", "A2")]
    # the A0 attack is the recipe's own: same stage config as a study without a suite
    plain = load_experiment_config("experiment-digits", preset="quick")
    cfg = load_experiment_config("experiment-digits", preset="quick", overrides={"attack_suite": SUITE})
    assert cfg.stages.attack_of("hard", 0, "A0") == plain.stages.attack_of("hard", 0)
    assert cfg.stages.attack_of("hard", 0, "A1").selection_score == "logit_margin"
    # one surrogate stage per target, shared by nothing else, trained before A2
    surrogates = [k for k in shard["timings"]["stages"] if k.startswith("surrogates:")]
    assert len(surrogates) == 2
    a = shard["adaptive"]
    worst = {r["name"]: r for r in a["worst_case_rows"]}
    for name in ("hard", "ls_neg"):
        mine = [r["attack_acc1"] for r in shard["rows"] if r["name"] == name]
        assert worst[name]["attack_acc1"] == max(mine)
    # every row scored by both judges and the nearest-neighbour judge
    for r in shard["rows"]:
        for key in ("attack_acc1_judge2", "attack_acc1_both", "attack_acc1_nn"):
            assert r[key] is not None and 0 <= r[key] <= 1
        assert r["attack_acc1_both"] <= min(r["attack_acc1"], r["attack_acc1_judge2"]) + 1e-9
    assert shard["eval_model2"]["arch"] == "small_cnn_wide"
    report = (root / "s0" / "report.md").read_text()
    assert "## Adaptive attacks: each attack and the worst case" in report
    assert "## Judges side by side" in report
    # the merge recomputes the same statistics from both shards' rows; its per-seed table gives each target's
    # attack Acc@1 with its bootstrap-over-classes interval
    m = json.loads((merged / "results.json").read_text())
    per_seed = (merged / "report.md").read_text().split("## Per seed")[1]
    first = m["adaptive"]["worst_case_rows"][0]
    assert f"{100 * first['attack_acc1']:.1f} [{100 * first['attack_acc1_ci_low']:.1f}, " \
           f"{100 * first['attack_acc1_ci_high']:.1f}]" in per_seed
    assert len(m["rows"]) == 12 and m["adaptive"]["attacks"] == ["A0", "A1", "A2"]
    c2a = next(c for c in m["claims"] if c.get("part") == "attack drop")
    assert c2a["metrics"]["attack_acc1"]["n"] == 2
    assert m["adaptive"]["decision"]["headline"] in ("holds under the worst case", "narrows to A0")
