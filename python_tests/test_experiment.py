"""`lsmia experiment`: the quick preset end to end on the digits scenario, stage reuse, bad configs,
and the report's summary/verdict on constructed rows."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from lsmia_ext.cli import main
from lsmia_ext.config import ConfigError, flatten_overrides, parse_overrides
from lsmia_ext.experiment import load_experiment_config, run_experiment, summarise

ROW_KEYS = {"name", "alpha", "seed", "test_acc", "ece", "attack_acc1", "attack_acc5", "attack_acc1_initial",
            "attack_acc5_initial", "delta_eval", "fid", "precision", "recall", "density", "coverage", "kes_train",
            "kes_test", "attack_acc_category", "attack_acc_category_initial", "train_acc", "kid", "kid_ci_low",
            "kid_ci_high", "test_acc_sampling", "val_acc", "attack_acc1_ci_low", "attack_acc1_ci_high",
            "attack_acc1_nn", "attack_acc1_judge2", "attack_acc1_both"}
ARGS = ["experiment", "--config", "experiment-digits", "--preset", "quick"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("study")
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def _stage_files(out):
    return {p: p.stat().st_mtime_ns for pattern in ("eval_model/model.pt", "targets/*/model.pt", "prior/generator.pt", "attacks/*/results.pt",
                                                    "evaluations/*/evaluation.json")
            for p in out.glob(pattern)}


def test_quick_preset_end_to_end(study):
    results = json.loads((study / "results.json").read_text())
    assert [r["name"] for r in results["rows"]] == ["ls_pos", "hard", "ls_neg"]
    assert [r["alpha"] for r in results["rows"]] == [0.1, 0.0, -0.05]
    for row in results["rows"]:
        assert set(row) == ROW_KEYS
        assert row["attack_acc5"] is None and row["attack_acc5_initial"] is None  # 5 classes: top-5 is trivial
        # whole classes, not identity sub-classes: "the right category" is the class itself, not reported
        assert row["attack_acc_category"] is None and row["attack_acc_category_initial"] is None
        assert row["test_acc_sampling"] is None  # no MID target
        assert row["val_acc"] is None  # the digits scenario has no validation split
        assert row["kid_ci_low"] <= row["kid"] <= row["kid_ci_high"]
        assert row["attack_acc1_judge2"] is None and row["attack_acc1_both"] is None  # no second judge
        assert row["attack_acc1_ci_low"] <= row["attack_acc1"] <= row["attack_acc1_ci_high"]
        for key in ROW_KEYS - {"name", "attack_acc5", "attack_acc5_initial", "attack_acc_category",
                               "attack_acc_category_initial", "test_acc_sampling", "val_acc", "attack_acc1_judge2",
                               "attack_acc1_both"}:
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]), (key, row[key])
        assert 0.0 <= row["attack_acc1"] <= 1.0 and 0.0 <= row["test_acc"] <= 1.0
        assert row["test_acc"] > 0.5  # the targets really learned the 5 private digits
    assert results["settings"]["shared_across_seeds"] == ["prior", "eval_model"]
    stages = results["timings"]["stages"]
    assert {"prior", "eval_model", "reference", "target:hard_seed0", "attack:hard_seed0",
            "evaluation:hard_seed0"} <= set(stages)
    assert not any(t["reused"] for t in stages.values())
    for name in ("report.md", "report.html", "plot_attack_acc1.png", "plot_test_acc.png", "plot_claims.png",
                 "grid_ls_pos_seed0.png", "grid_hard_seed0.png", "grid_ls_neg_seed0.png", "manifest.json"):
        assert (study / name).stat().st_size > 0, name
    md = (study / "report.md").read_text()
    assert "| ls_neg | -0.05 |" in md and "grid_hard_seed0.png" in md
    # one seed: both claims found (C2 in its two halves), paired, and inconclusive by construction
    claims = results["claims"]
    assert [(c["claim"], c["name"], c["baseline"], c["direction"]) for c in claims] == [
        ("C1", "ls_pos", "hard", 1), ("C2a", "ls_neg", "hard", -1), ("C2b", "ls_neg", "hard", -1)]
    assert claims[2]["metric"] == "test_acc_cost" and claims[2]["threshold"] == 0.035
    assert results["matched"] == [] and results["controls"] == []  # no defense family, no control family
    assert all(c["verdict"] == "inconclusive (1 seed)" for c in claims)
    assert claims[0]["metrics"]["attack_acc1"]["diffs"] == [pytest.approx(results["rows"][0]["attack_acc1"]
                                                                          - results["rows"][1]["attack_acc1"])]
    assert "## Claims: paired by seed" in md and "inconclusive (1 seed)" in md and "plot_claims.png" in md
    assert "Ablation" not in md and results["ablation"] is None
    for d in ("prior", "eval_model", "targets/ls_neg_seed0", "attacks/ls_neg_seed0"):
        assert (study / d / "stage.json").exists()
    # the three targets share the recipe and differ in alpha only
    targets = results["settings"]["stages"]["targets"]
    pos, neg = targets["ls_pos_seed0"], targets["ls_neg_seed0"]
    assert pos["loss"]["alpha"] == 0.1 and neg["loss"]["alpha"] == -0.05
    pos["loss"].pop("alpha"), neg["loss"].pop("alpha")
    assert pos == neg


def test_second_run_reuses_every_stage(study):
    before = _stage_files(study)
    assert len(before) == 11
    cfg = load_experiment_config("experiment-digits", preset="quick")
    results = run_experiment(cfg, study, log=lambda *_: None)
    stages = results["timings"]["stages"]
    assert "reference" not in stages  # nothing to evaluate, so the private reference is never built
    assert all(t["reused"] and t["wall_s"] == 0.0 for t in stages.values()), stages
    assert _stage_files(study) == before


def test_changed_evaluation_setting_reruns_only_evaluations(study):
    cfg = load_experiment_config("experiment-digits", preset="quick", overrides={"evaluate.kes.steps": 10})
    stages = run_experiment(cfg, study, log=lambda *_: None)["timings"]["stages"]
    rerun = sorted(k for k, t in stages.items() if not t["reused"])
    assert rerun == ["evaluation:hard_seed0", "evaluation:ls_neg_seed0", "evaluation:ls_pos_seed0", "reference"]


def test_moved_run_evaluates_its_own_targets(study, tmp_path):
    """attack.json records the target's path as that run was given it (relative to its working directory);
    a run moved elsewhere, or resumed from another directory, re-evaluates the targets in its own tree."""
    moved = tmp_path / "moved"
    shutil.copytree(study, moved)
    for meta in moved.glob("attacks/*/attack.json"):
        attack = json.loads(meta.read_text())
        attack["target"] = "runs/elsewhere/targets/" + meta.parent.name  # as recorded from another cwd
        meta.write_text(json.dumps(attack))
    cfg = load_experiment_config("experiment-digits", preset="quick", overrides={"evaluate.kes.steps": 12})
    results = run_experiment(cfg, moved, log=lambda *_: None)
    stages = results["timings"]["stages"]
    assert not stages["evaluation:hard_seed0"]["reused"] and stages["attack:hard_seed0"]["reused"]
    assert [r["test_acc"] for r in results["rows"]] == pytest.approx(
        [r["test_acc"] for r in json.loads((study / "results.json").read_text())["rows"]])


def test_unknown_key_names_it():
    with pytest.raises(ConfigError, match="unknown key 'epochz'"):
        load_experiment_config("experiment-digits", overrides={"epochz": 3})


def test_empty_targets_is_an_error():
    with pytest.raises(ConfigError, match="targets is empty"):
        load_experiment_config("experiment-digits", overrides={"targets": []})


@pytest.mark.parametrize("override, message", [
    ("target.set.epochz=3", "unknown key 'epochz'"),
    ("attack.set.final.keep=99", "final.keep"),
    ("targets=[{name: a, alpha: 0}, {name: a, alpha: 0.1}]", "distinct"),
    ("targets=[{name: a, alpha: 0, set: {loss.alpha: 0.2}}]", "entry's `alpha`"),
    ("targets=[{name: 'a/b', alpha: 0}]", "names a directory"),
    ("seeds=[]", "seeds is empty"),
    ("prior.config=no-such-config", "shipped configs"),
])
def test_bad_stage_settings_fail_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment_config("experiment-digits", overrides=parse_overrides([override]))


def test_unknown_preset_and_seed_count():
    with pytest.raises(ConfigError, match="unknown preset 'slow'; allowed: quick"):
        load_experiment_config("experiment-digits", preset="slow")
    with pytest.raises(ConfigError, match="--seeds must be >= 1"):
        load_experiment_config("experiment-digits", seeds=0)
    assert load_experiment_config("experiment-digits", seeds=3).seeds == [0, 1, 2]


def test_hflip_on_digits_is_refused_before_training(tmp_path):
    cfg = load_experiment_config("experiment-digits", overrides={"attack.set.hflip": True})
    with pytest.raises(ValueError, match="set attack.set.hflip=false"):
        run_experiment(cfg, tmp_path, log=lambda *_: None)
    assert not (tmp_path / "prior").exists()


def test_flatten_overrides_mixes_nested_and_dotted_and_refuses_duplicates():
    assert flatten_overrides({"train": {"steps": 5}, "fid.num_samples": 9, "empty": {}}) == \
        {"train.steps": 5, "fid.num_samples": 9, "empty": {}}
    with pytest.raises(ConfigError, match="'train.steps' is given twice"):
        flatten_overrides({"train": {"steps": 5}, "train.steps": 6})


def _row(name, alpha, seed, acc1, test_acc):
    row = dict.fromkeys(ROW_KEYS, 0.5)
    row.update(name=name, alpha=alpha, seed=seed, attack_acc1=acc1, test_acc=test_acc, attack_acc5=None)
    return row


def test_summary_mean_and_std():
    rows = [_row("pos", 0.1, 0, 0.8, 0.90), _row("pos", 0.1, 1, 0.6, 0.90),
            _row("hard", 0.0, 0, 0.5, 0.92), _row("hard", 0.0, 1, 0.5, 0.92)]
    summary = summarise(rows)
    assert [e["name"] for e in summary] == ["pos", "hard"]
    mean, std = summary[0]["attack_acc1"]
    assert mean == pytest.approx(0.7) and std == pytest.approx(math.sqrt(0.02))
    assert summary[0]["attack_acc5"] is None


def test_ablation_study_claims_appear_under_their_heading(study, tmp_path):
    """--ablation DIR adds the other finished study's paired claim table; here the quick study serves
    as its own ablation (its results.json is there), so nothing is retrained."""
    out = tmp_path / "with_ablation"
    shutil.copytree(study, out)
    assert main([*ARGS, "--out", str(out), "--ablation", str(study)]) == 0
    md = (out / "report.md").read_text()
    section = md.split("## Ablation: prior without the private domain")[1]
    assert f"Study {study}: digits" in section
    assert "| C1 | ls_pos (alpha +0.1) - hard (alpha 0) | attack Acc@1 higher |" in section
    assert "inconclusive (1 seed)" in section
    assert "Ablation: prior without the private domain" in (out / "report.html").read_text()
    ablation = json.loads((out / "results.json").read_text())["ablation"]
    assert ablation["dir"] == str(study) and [c["claim"] for c in ablation["claims"]] == ["C1", "C2a", "C2b"]
    with pytest.raises(ConfigError, match="holds no results.json"):
        load_experiment_config("experiment-digits", ablation=tmp_path / "missing")
