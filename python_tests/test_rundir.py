"""runio.RunDir, the one run-directory rule of every stage: another config is refused naming the keys, a
finished run is returned, an unfinished one resumed; directories written by earlier versions (before
run.json) are still recognised; a record of another format is refused. Fabricated directories only."""
from __future__ import annotations

import pytest
import yaml

from conftest import digits_cfg
from lsmia_ext.errors import UserInputError
from lsmia_ext.runio import RunDir, read_json, recorded_config, write_json, write_text


def test_claim_refuses_returns_and_resumes(tmp_path):
    cfg = {"train": {"steps": 10, "lr": 0.1, "num_threads": 1}, "seed": 0}
    ident = {"train": {"lr": 0.1}, "seed": 0}

    def run(**train):
        new = {**cfg, "train": {**cfg["train"], **train}}
        changed = {**ident, "train": {**ident["train"], **{k: v for k, v in train.items() if k == "lr"}}}
        return RunDir(tmp_path, "prior", new, str(changed), resumable=("train.steps", "train.num_threads"),
                      extends=("train.steps",))

    assert run().claim() is None  # fresh: recorded, the caller runs
    assert read_json(tmp_path / "run.json")["finished"] is False
    assert run().claim() is None  # unfinished: the caller resumes
    run().finish({"fid": 1.5})
    assert run().claim() == {"fid": 1.5}
    assert run(num_threads=2).claim() == {"fid": 1.5}  # a runtime key changes nothing
    assert run(steps=20).claim() is None  # more steps: resumed
    with pytest.raises(UserInputError, match=r"holds a 'prior' run of another config \(differs in train.lr\)"):
        run(lr=0.2).claim()


def test_record_of_another_format_or_kind_or_damaged(tmp_path):
    write_json(tmp_path / "run.json", {"format": 2, "kind": "train"})
    with pytest.raises(UserInputError, match="another version of lsmia \\(format 2"):
        RunDir(tmp_path, "train", {}).claim()
    write_json(tmp_path / "run.json", {"format": 1, "kind": "attack", "config_hash": "x"})
    with pytest.raises(UserInputError, match="holds a run of kind 'attack', not 'train'"):
        RunDir(tmp_path, "train", {}).claim()
    write_text(tmp_path / "run.json", '{"format": 1, "ki')
    with pytest.raises(UserInputError, match="run.json is not valid JSON"):
        RunDir(tmp_path, "train", {}).claim()


def test_train_run_directory_of_the_previous_version_is_recognised_as_finished(tmp_path):
    from lsmia_ext.train import train_classifier

    cfg = digits_cfg("epochs=2")
    final = {"test_acc": 0.9, "test_nll": 0.3, "ece": 0.01, "train_loss": 0.2, "alpha": 0.0}
    write_json(tmp_path / "metrics.json", {"config_hash": cfg.run_hash(), "epochs": [], "final": final})
    write_text(tmp_path / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    assert train_classifier(cfg, tmp_path) == final  # nothing trained
    assert recorded_config(tmp_path)["data"]["name"] == "digits"
    with pytest.raises(UserInputError, match=r"differs in epochs\)"):
        train_classifier(digits_cfg("epochs=3"), tmp_path)


def test_prior_run_directory_of_the_previous_version_is_recognised_as_finished(tmp_path):
    from lsmia_ext.config import load_config
    from lsmia_ext.priors import PriorConfig, train_prior
    from lsmia_ext.priors.train import _identity_hash

    cfg = load_config(PriorConfig, "prior-digits")
    write_json(tmp_path / "config.json", {"identity_hash": _identity_hash(cfg), "config": cfg.model_dump(mode="json")})
    metrics = {"fid": 3.0, "steps": cfg.train.steps, "finished": True}
    write_json(tmp_path / "metrics.json", metrics)
    assert train_prior(cfg, tmp_path, progress=False) == metrics  # nothing trained
    with pytest.raises(UserInputError, match=r"differs in seed\)"):
        train_prior(load_config(PriorConfig, "prior-digits", {"seed": 5}), tmp_path, progress=False)


def test_stage_record_of_the_previous_version_is_reused(tmp_path):
    from lsmia_ext.experiment.stages import run_stage

    write_json(tmp_path / "stage.json", {"stage": "prior", "config_hash": "abc", "finished": True, "wall_s": 7.0,
                                         "result": {"fid": 2.0}})
    outcome = run_stage("prior", tmp_path, "abc", lambda: pytest.fail("a finished stage must not run"), log=print)
    assert outcome.reused and outcome.result == {"fid": 2.0} and outcome.original_wall_s == 7.0
