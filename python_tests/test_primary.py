"""Primary comparisons of a defense study (experiment/primary.py, issue 29): one cost, the bracket rule (a
seed outside a measured bracket is not read), Holm over the primary family only, the exploratory matched
table beside it, the report section and the config fields; the new defense families' labels."""
import math

import pytest

from lsmia_ext.experiment.config import ReportConfig, TargetEntry, load_experiment_config
from lsmia_ext.experiment.controls import comparisons
from lsmia_ext.experiment.primary import pooled_sd, primary_comparison, primary_families, primary_results
from lsmia_ext.experiment.stats import detectable_effect

COST = 0.02


def _study():
    """Validation accuracies and attack Acc@1 on 3 seeds; undefended at 0.90 (attack 0.80), so the level at a
    2-point cost is 0.88 on every seed.
    negative LS: (0.875, 0.30), (0.885, 0.40 + 0.01 s): at 0.88 halfway, 0.35 + 0.005 s.
    MID: on a measured point at 0.88, 0.60 + 0.015 s: MID - negative LS = 0.25, 0.26, 0.27.
    TL-DMI: seeds 0 and 1 (0.875, 0.20), (0.885, 0.30 + 0.06 s), read halfway, 0.25 + 0.03 s; seed 2 measured
    at 0.86 and 0.89 only, a 3-point gap around 0.88: not read there.
    BiDO: 0.80 and the undefended 0.90, a 10-point gap: read on no seed.
    train less (a control family) sits on 0.88; positive LS is no defense."""
    targets = [TargetEntry(name="undefended", alpha=0.0), TargetEntry(name="pos", alpha=0.1),
               TargetEntry(name="neg_a", alpha=-0.05), TargetEntry(name="neg_b", alpha=-0.1),
               TargetEntry(name="mid", alpha=0.0, set={"defense": {"kind": "mid", "beta": 0.01}}),
               TargetEntry(name="bido", alpha=0.0, set={"defense": {"kind": "bido", "lambda_x": 3.0}}),
               TargetEntry(name="tl_a", alpha=0.0, set={"defense": {"kind": "tl_dmi", "freeze_layers": 3}}),
               TargetEntry(name="tl_b", alpha=0.0, set={"defense": {"kind": "tl_dmi", "freeze_layers": 4}}),
               TargetEntry(name="short", alpha=0.0, family="train less", set={"epochs": 2})]
    rows = []
    for s in range(3):
        tl = [("tl_a", 0.885, 0.30 + 0.06 * s), ("tl_b", 0.875, 0.20)] if s < 2 else \
            [("tl_a", 0.89, 0.30), ("tl_b", 0.86, 0.20)]
        for name, val, attack in [("undefended", 0.90, 0.80), ("pos", 0.905, 0.95), ("neg_a", 0.885, 0.40 + 0.01 * s),
                                  ("neg_b", 0.875, 0.30), ("mid", 0.88, 0.60 + 0.015 * s), ("bido", 0.80, 0.10),
                                  *tl, ("short", 0.88, 0.50)]:
            rows.append({"name": name, "seed": s, "val_acc": val, "test_acc": val - 0.01, "attack_acc1": attack})
    return rows, targets


def test_primary_family_is_every_defense_but_the_reference_and_the_controls():
    _, targets = _study()
    assert primary_families(targets, "negative LS", ["train less"]) == ["MID", "BiDO", "TL-DMI"]
    assert primary_families(targets, "MID", ["train less"]) == ["negative LS", "BiDO", "TL-DMI"]


def test_primary_comparison_by_hand():
    rows, targets = _study()
    mid, bido, tl = primary_comparison(rows, targets, COST, "negative LS", 0.015, ["train less"])
    assert all(e["cost"] == COST and e["reference"] == "negative LS" and e["utility"] == "val_acc"
               for e in (mid, bido, tl))
    # MID on its measured point, negative LS inside its 1-point bracket: d = MID - negative LS
    assert mid["values"] == pytest.approx([0.60, 0.615, 0.63])
    assert mid["reference_values"] == pytest.approx([0.35, 0.355, 0.36])
    assert mid["diffs"] == pytest.approx([0.25, 0.26, 0.27]) and mid["sd"] == pytest.approx(0.01)
    t3 = 0.26 / (0.01 / math.sqrt(3))
    assert mid["p"] == pytest.approx(1 - t3 / math.sqrt(t3 ** 2 + 2), rel=1e-6)  # t with 2 degrees of freedom
    # the bracket rule: TL-DMI's seed 2 has measured points 3 points apart around 0.88, so it is not read
    assert tl["seeds"] == [0, 1] and tl["unread"] == [2] and tl["unread_reference"] == [] and tl["seeds_total"] == 3
    assert tl["values"] == pytest.approx([0.25, 0.28]) and tl["diffs"] == pytest.approx([-0.10, -0.075])
    # 2 differences: t = 0.0875 / (0.0125 / sqrt 2 / sqrt 2) = 7 with 1 degree of freedom, p = 1 - 2 atan(7) / pi
    assert tl["p"] == pytest.approx(1 - 2 * math.atan(7.0) / math.pi, rel=1e-6)
    assert (bido["n"], bido["unread"], bido["p"], bido["verdict"]) == (0, [0, 1, 2], None, "not measured")
    # Holm over the two comparisons with a p (BiDO takes no part): 2 x the smaller p, then the larger p itself
    assert mid["holm_tests"] == tl["holm_tests"] == 2 and bido["p_holm"] is None
    assert mid["p_holm"] == pytest.approx(2 * mid["p"]) and tl["p_holm"] == pytest.approx(tl["p"])
    assert mid["verdict"] == "negative LS more private" and tl["verdict"] == "no difference shown"
    # beside the undecided verdict: the effect 80 % power detects at Holm's first step, 0.05 / 2
    assert tl["detectable_effect_holm"] == pytest.approx(detectable_effect(tl["sd"], 2, confidence=1 - 0.05 / 2))
    # the bracket rule is max_gap's: 3 points allowed, seed 2 is read (halfway 0.86 -> 0.89 is 0.88: 0.20 + 2/3 0.10)
    wide = primary_comparison(rows, targets, COST, "negative LS", 0.03, ["train less"])[2]
    assert wide["seeds"] == [0, 1, 2] and wide["values"][2] == pytest.approx(0.20 + 0.10 * 2 / 3)


def test_holm_runs_over_the_primary_family_only_and_the_matched_table_turns_exploratory():
    rows, targets = _study()
    plain = comparisons(rows, targets, ReportConfig(matched_drops=[0.01, COST], max_gap=0.015))
    assert "primary" not in plain and all("exploratory" not in e for e in plain["matched"])
    assert plain["matched"][0]["holm_tests"] > 2  # the whole table is one Holm family without a primary cost
    both = comparisons(rows, targets, ReportConfig(matched_drops=[0.01, COST], max_gap=0.015, primary_cost=COST))
    primary = both["primary"]
    assert [e["family"] for e in primary] == ["MID", "BiDO", "TL-DMI"] and primary[0]["holm_tests"] == 2
    # one cost: the matched costs do not change the primary table
    alone = comparisons(rows, targets, ReportConfig(matched_drops=[0.04], max_gap=0.015, primary_cost=COST))
    assert [e["p_holm"] for e in alone["primary"]] == [e["p_holm"] for e in primary]
    # the matched table leaves the primary pairs out, keeps the rest (the control against negative LS at the
    # primary cost too), reads every verdict at the unadjusted p and carries no Holm field
    keys = {(e["drop"], e["a"], e["b"]) for e in both["matched"]}
    assert not any((COST, "negative LS", f) in keys for f in ("MID", "BiDO", "TL-DMI"))
    assert (COST, "negative LS", "train less") in keys and (0.01, "negative LS", "MID") in keys
    assert len(both["matched"]) == len(plain["matched"]) - 3
    assert all(e["exploratory"] and "p_holm" not in e for e in both["matched"])
    mid_tl = next(e for e in both["matched"] if (e["drop"], e["a"], e["b"]) == (COST, "MID", "TL-DMI"))
    # MID - TL-DMI = 0.35, 0.335 on seeds 0, 1: t = 0.3425 / (0.0075 / sqrt 2 / sqrt 2) = 45.67, 1 degree of
    # freedom, p = 1 - 2 atan(t) / pi = 0.0139: below 0.05 unadjusted, so a verdict (Holm over this table would
    # multiply it by its number of tests)
    t1 = 0.3425 / 0.0075
    assert mid_tl["p"] == pytest.approx(1 - 2 * math.atan(t1) / math.pi, rel=1e-6)
    assert mid_tl["verdict"] == "TL-DMI more private"


def test_post_hoc_entries_repeat_the_primary_table_without_them():
    rows, targets = _study()
    targets[7] = TargetEntry(name="tl_b", alpha=0.0, set={"defense": {"kind": "tl_dmi", "freeze_layers": 4}},
                             added_after_attacks=True)
    res = primary_results(rows, targets, ReportConfig(primary_cost=COST))
    assert res["primary"][2]["seeds"] == [0, 1]
    without = res["primary_without_post_hoc"][2]
    assert without["family"] == "TL-DMI" and without["n"] == 0 and without["verdict"] == "not measured"
    assert primary_results(rows, targets, ReportConfig()) == {}


def test_report_blocks():
    from lsmia_ext.experiment.matched_report import matched_blocks
    from lsmia_ext.experiment.primary_report import primary_blocks

    rows, targets = _study()
    results = comparisons(rows, targets, ReportConfig(matched_drops=[0.01, COST], max_gap=0.015, primary_cost=COST))
    blocks = primary_blocks(results)
    assert blocks[0] == ("h2", "Primary comparisons: each defense against negative LS at a cost of 2.0 points")
    assert "over the 2 comparisons of this table alone" in blocks[1][1]
    _, header, body = blocks[2]
    assert header[5] == "family - negative LS (points)" and [b[0] for b in body] == ["MID", "BiDO", "TL-DMI"]
    assert body[2][2] == "2 of 3 (not read: TL-DMI on seed 2)" and body[2][5] == "-8.8"
    assert body[2][-1].startswith("no difference shown (could detect ±") and "level 0.05/2" in body[2][-1]
    assert "negative LS more private (MID - negative LS = +26.0 points" in blocks[3][1]
    assert "Not measured (fewer than 2 seeds with both families inside a measured bracket): BiDO." in blocks[3][1]
    matched = matched_blocks(results)
    assert matched[0] == ("h2", "Defenses at matched utility (exploratory, unadjusted)")
    assert matched[1][1].startswith("Exploratory:") and matched[3][1][8] == "p (unadjusted)"
    assert primary_blocks({"matched": []}) == []


def test_report_config_primary_fields():
    assert "primary_cost" not in ReportConfig().model_dump() and "primary_reference" not in ReportConfig().model_dump()
    assert ReportConfig(primary_cost=0.02).model_dump()["primary_reference"] == "negative LS"
    for bad in (0.0, 1.0, -0.02):
        with pytest.raises(ValueError, match="primary_cost"):
            ReportConfig(primary_cost=bad)
    cfg = load_experiment_config("experiment-digits", overrides={"report.primary_cost": 0.02})
    assert cfg.report.primary_cost == 0.02
    with pytest.raises(ValueError, match="report.primary_reference 'MID' is no family of the targets; allowed: "
                                         r"\['negative LS'\]"):
        load_experiment_config("experiment-digits", overrides={"report.primary_cost": 0.02,
                                                                "report.primary_reference": "MID"})


def test_pooled_spread():
    # (n - 1) sd^2 pooled: (2 * 0.03^2 + 1 * 0.06^2) / 3 = 0.0018; a comparison without an sd takes no part
    got = pooled_sd([{"n": 3, "sd": 0.03}, {"n": 2, "sd": 0.06}, {"n": 1, "sd": None}, {"n": 0, "sd": None}])
    assert got == {"sd": pytest.approx(math.sqrt(0.0018)), "df": 3, "comparisons": 2}
    assert pooled_sd([{"n": 1, "sd": None}])["sd"] is None


def test_new_defense_families_are_labelled():
    from lsmia_ext.experiment.tradeoff import defense_of, setting_of

    tl = TargetEntry(name="tl", alpha=0.0, set={"defense": {"kind": "tl_dmi", "freeze_layers": 3, "pretrain_epochs": 1}})
    re = TargetEntry(name="re", alpha=0.0, set={"defense": {"kind": "random_erasing", "erase_scale": [0.1, 0.4],
                                                            "erase_p": 0.5}})
    trap = TargetEntry(name="trap", alpha=0.0, set={"defense.kind": "trap_mid", "defense.trap_beta": 0.3})
    plain = TargetEntry(name="re0", alpha=0.0, set={"defense": {"kind": "random_erasing"}})
    assert [defense_of(t) for t in (tl, re, trap, plain)] == ["TL-DMI", "random erasing", "Trap-MID", "random erasing"]
    assert setting_of(tl) == "freeze_layers 3, pretrain_epochs 1"
    assert setting_of(re) == "erase_scale 0.1-0.4, erase_p 0.5"
    assert setting_of(trap) == "trap_beta 0.3" and setting_of(plain) == "defaults"


def test_the_shipped_comparison_config_has_the_seeds_its_power_computation_gives():
    """experiment-fmnist-defenses2025: 5 primary comparisons against negative LS at 2 points; its seed count is
    seeds_for_holm at the pooled spread of docs/defenses' negative-LS matched rows, as its rationale says."""
    import json
    from pathlib import Path

    from lsmia_ext.experiment.controls import control_families
    from lsmia_ext.experiment.primary import primary_pairs
    from lsmia_ext.experiment.stats import seeds_for_holm

    cfg = load_experiment_config("experiment-fmnist-defenses2025")
    pairs = primary_pairs(cfg.targets, cfg.report, control_families(cfg.targets))
    assert pairs == [(0.02, "negative LS", f) for f in ("MID", "BiDO", "TL-DMI", "Trap-MID", "random erasing")]
    assert control_families(cfg.targets) == ["train less", "narrower model"]
    results = json.loads((Path(__file__).resolve().parents[1] / "docs" / "defenses" / "results.json").read_text())
    spread = pooled_sd([e for e in results["matched"] if "negative LS" in (e["a"], e["b"])])
    assert spread["comparisons"] == 10 and round(100 * spread["sd"], 2) == 5.15
    assert seeds_for_holm(spread["sd"], 0.10, len(pairs)) == len(cfg.seeds) == 7
    assert "5.15 points" in cfg.rationale and "stats.seeds_for_holm(0.0515, 0.10, 5) = 7" in cfg.rationale


def test_with_an_attack_suite_the_primary_table_reads_the_worst_case():
    from lsmia_ext.experiment.adaptive import suite_statistics
    from lsmia_ext.experiment.stats import claim_statistics

    rows, targets = _study()
    report = ReportConfig(matched_drops=[0.01], max_gap=0.015, primary_cost=COST)
    # A1 leaks 5 points more than A0 from the MID target only: its worst case is A1's, everyone else's A0's
    suite = [{**r, "attack": "A0"} for r in rows] + \
        [{**r, "attack": "A1", "attack_acc1": r["attack_acc1"] + (0.05 if r["name"] == "mid" else -0.05)} for r in rows]

    def single(some):
        return {"claims": claim_statistics(some, targets), **comparisons(some, targets, report)}

    stats = suite_statistics(suite, ["A0", "A1"], single)
    a0 = stats["adaptive"]["by_attack"]["A0"]["primary"][0]
    assert a0["family"] == "MID" and a0["diffs"] == pytest.approx([0.25, 0.26, 0.27])
    assert stats["primary"][0]["diffs"] == pytest.approx([0.30, 0.31, 0.32])  # the worst case's


def test_frontier_curves_by_hand_and_the_plot_in_the_report_section(tmp_path):
    from lsmia_ext.experiment.primary_report import frontier, primary_blocks

    rows, targets = _study()
    curves = frontier(rows, targets)
    # TL-DMI: tl_a (0.885, 0.885, 0.89) / (0.30, 0.36, 0.30); tl_b (0.875, 0.875, 0.86) / 0.20: sorted by accuracy
    tl = curves["TL-DMI"]
    assert len(tl["points"]) == 6
    assert tl["curve"] == [pytest.approx((0.87, 0.20)), pytest.approx((0.8866667, 0.32), rel=1e-5)]
    assert curves["none"]["curve"] == [pytest.approx((0.90, 0.80))] and "train less" in curves
    assert set(curves) == {"none", "positive LS", "negative LS", "MID", "BiDO", "TL-DMI", "train less"}
    results = comparisons(rows, targets, ReportConfig(matched_drops=[COST], max_gap=0.015, primary_cost=COST))
    blocks = primary_blocks(results, tmp_path, rows, targets)
    assert blocks[4][:2] == ("img", "plot_frontier.png") and (tmp_path / "plot_frontier.png").stat().st_size > 0
    assert len(primary_blocks(results)) == 4  # no plot without rows and targets


def test_grid_check_reads_validation_accuracy_only_by_hand(tmp_path):
    import json

    from lsmia_ext.experiment.grid_check import grid_check, grid_check_text, trained_targets

    rows, targets = _study()
    # the check sees no attack result: trained targets' validation accuracy from their stage records only
    for r in rows:
        d = tmp_path / "targets" / f"{r['name']}_seed{r['seed']}"
        d.mkdir(parents=True)
        finished = (r["name"], r["seed"]) != ("neg_b", 2)  # one stage still training
        (d / "stage.json").write_text(json.dumps({"finished": finished, "result": {"val_acc": r["val_acc"]}}))
    trained = trained_targets(tmp_path, targets, [0, 1, 2])
    assert len(trained) == len(rows) - 1 and all(set(t) == {"name", "seed", "val_acc"} for t in trained)
    checks = {(c["family"], c["seed"]): c for c in grid_check(trained, targets, COST, 0.015)}
    assert all(c["level"] == pytest.approx(0.88) for c in checks.values())
    assert checks[("MID", 0)]["read"] and checks[("train less", 1)]["read"]  # on a measured point
    # negative LS brackets 0.88 with 0.885 and 0.875; on seed 2 the 0.875 setting is still training, and 0.885
    # with the undefended 0.90 leaves the level below every measured point: not read (yet)
    assert checks[("negative LS", 0)]["read"] and not checks[("negative LS", 2)]["read"]
    assert checks[("negative LS", 2)]["measured"] == [0.885]
    assert not any(checks[("BiDO", s)]["read"] for s in range(3))  # 0.80 and 0.90: a 10-point gap
    assert [checks[("TL-DMI", s)]["read"] for s in range(3)] == [True, True, False]  # seed 2: 0.86 / 0.89
    assert checks[("TL-DMI", 2)]["measured"] == [0.89, 0.86] and ("positive LS", 0) not in checks
    assert "seed 2 TL-DMI: NOT READ at 88.00 % (measured 89.00, 86.00)" in grid_check_text(list(checks.values()))


def test_check_grid_on_the_command_line(tmp_path):
    import json

    from conftest import lsmia

    empty = lsmia("experiment", "--config", "experiment-fmnist-defenses2025", "--set", "seeds=[0]", "--check-grid",
                  "--out", tmp_path)
    assert empty.code == 1 and "no trained undefended target" in empty.out and not list(tmp_path.iterdir())
    d = tmp_path / "targets" / "undefended_seed0"
    d.mkdir(parents=True)
    (d / "stage.json").write_text(json.dumps({"finished": True, "result": {"val_acc": 0.9}}))
    one = lsmia("experiment", "--config", "experiment-fmnist-defenses2025", "--set", "seeds=[0]", "--check-grid",
                "--out", tmp_path)
    assert one.code == 1 and "seed 0 MID: NOT READ at 88.00 % (measured none trained yet)" in one.out
    plain = lsmia("experiment", "--config", "experiment-fmnist", "--check-grid", "--out", tmp_path)
    assert plain.code == 2 and "no report.primary_cost" in plain.err
