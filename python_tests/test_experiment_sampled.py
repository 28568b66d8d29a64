"""A MID target attacked two ways in one study: with the bottleneck mean (the entry that trains it) and
with its sampling on, as the MID authors run their targets (an entry with target_of + attack_set)."""
from __future__ import annotations

import json

import pytest
import torch

from lsmia_ext.config import ConfigError
from lsmia_ext.experiment import load_experiment_config, run_experiment

MID = {"defense": {"kind": "mid", "beta": 0.01}}
TARGETS = [{"name": "hard", "alpha": 0.0},
           {"name": "mid", "alpha": 0.0, "set": MID},
           {"name": "mid_sampled", "alpha": 0.0, "set": MID, "family": "MID (sampled)", "target_of": "mid",
            "attack_set": {"target_sampling": True}}]


def _config(targets=TARGETS, **extra):
    return load_experiment_config("experiment-digits", preset="quick",
                                  overrides={"targets": targets, "data.train_per_class": 100, "data.val_per_class": 30, "num_threads": 1, **extra})


def test_the_sampled_entry_attacks_the_mid_target_without_training_its_own(tmp_path):
    torch.set_num_threads(1)
    results = run_experiment(_config(), tmp_path, log=lambda *_: None)
    rows = {r["name"]: r for r in results["rows"]}
    mean, sampled = rows["mid"], rows["mid_sampled"]
    assert not (tmp_path / "targets" / "mid_sampled_seed0").exists()  # one training for both entries
    assert "target:mid_sampled_seed0" not in results["timings"]["stages"]
    run = next(r for r in results["runs"] if r["name"] == "mid_sampled")
    assert run["target"] == "targets/mid_seed0" and run["attack"] == "attacks/mid_sampled_seed0"
    attack = json.loads((tmp_path / "attacks" / "mid_sampled_seed0" / "attack.json").read_text())
    assert attack["target_sampling"] == {"on": True, "mid_bottlenecks": 1}
    plain = json.loads((tmp_path / "attacks" / "mid_seed0" / "attack.json").read_text())
    assert plain["target_sampling"]["on"] is False
    # the same target, so the same noise-free utility; the sampled row's utility is scored with sampling
    assert sampled["utility_sampling"] is True and "utility_sampling" not in mean
    assert sampled["val_acc_mean"] == mean["val_acc"] and sampled["test_acc_mean"] == mean["test_acc"]
    assert sampled["ece_mean"] == mean["ece"] and sampled["train_acc"] == mean["train_acc"]
    assert sampled["test_acc"] == mean["test_acc_sampling"] is not None
    assert 0.0 <= sampled["val_acc"] <= 1.0 and mean["val_acc"] is not None
    # the attack config differs only in the sampling switch
    stages = results["settings"]["stages"]
    own = stages["entry_attacks"]["mid_sampled_seed0"]
    assert own.pop("target_sampling") is True and own == stages["attacks"]["0"]
    assert stages["targets"]["mid_sampled_seed0"] == stages["targets"]["mid_seed0"]
    assert "mid_sampled: the same trained targets as their target_of entries" in (tmp_path / "report.md").read_text()
    # rerun: everything reused, the sampled validation accuracy scored again the same way
    again = run_experiment(_config(), tmp_path, log=lambda *_: None)
    assert all(t["reused"] for t in again["timings"]["stages"].values())
    assert {r["name"]: r for r in again["rows"]}["mid_sampled"]["val_acc"] == sampled["val_acc"]


@pytest.mark.parametrize("entry, message", [
    ({"name": "s", "alpha": 0.0, "set": MID, "target_of": "nope"}, "target_of 'nope' must name an earlier entry"),
    ({"name": "s", "alpha": 0.0, "set": {"defense": {"kind": "mid", "beta": 0.1}}, "target_of": "mid"},
     "alpha and set must equal"),
    ({"name": "s", "alpha": -0.05, "set": MID, "target_of": "mid"}, "alpha and set must equal"),
    ({"name": "s", "alpha": 0.0, "set": MID, "attack_set": {"optim": {"steps": -1}}}, "steps"),
])
def test_bad_sampled_entries_are_refused_at_load(entry, message):
    with pytest.raises(ConfigError, match=message):
        _config(TARGETS[:2] + [entry])


def test_sampling_a_target_without_bottleneck_is_an_error(tmp_path):
    targets = [{"name": "hard", "alpha": 0.0},
               {"name": "hard_sampled", "alpha": 0.0, "family": "x", "target_of": "hard",
                "attack_set": {"target_sampling": True}}]
    with pytest.raises(ValueError, match="has no MID bottleneck"):
        run_experiment(_config(targets), tmp_path, log=lambda *_: None)
