"""Every command-line input a user can get wrong ends in one line on stderr, `lsmia CMD: error: ...`, exit
code 2, and no traceback: truncated or foreign checkpoints and generator files, an --out that is a file,
unreadable data folders, a prior that cannot feed the target, a run directory of another config or
package version, a malformed --set. Tiny files only: nothing here trains."""
from __future__ import annotations

import sys

import pytest
import torch

from conftest import digits_cfg, lsmia
from lsmia_ext.models import build_model
from lsmia_ext.models.registry import classifier_state
from lsmia_ext.priors import Discriminator, StyleGenerator
from lsmia_ext.priors.store import save_discriminator, save_generator
from lsmia_ext.runio import save_checkpoint, write_json, write_text


def tiny_generator(channels: int = 1) -> StyleGenerator:
    return StyleGenerator(8, channels, z_dim=8, w_dim=8, channels_max=8, channels_min=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 5-class 8x8 grey target run directory and a tiny prior run directory (untrained)."""
    root = tmp_path_factory.mktemp("bad_input")
    torch.manual_seed(0)
    save_checkpoint(root / "target" / "model.pt", classifier_state(build_model("small_cnn", 5, 1, 8), "small_cnn"))
    save_generator(root / "prior" / "generator.pt", tiny_generator(), step=0)
    save_discriminator(root / "prior" / "discriminator.pt", Discriminator(8, 1, channels_max=8, channels_min=4))
    (root / "file").write_text("not a directory")
    return root


def one_error_line(result, command: str, *expected: str) -> str:
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"lsmia {command}: error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def attack(runs, target, prior, *extra):
    return lsmia("attack", "--target", target, "--prior", prior, "--out", runs / "attack_out",
                 "--set", "device=cpu", *extra)


# ---- checkpoints ---------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"PK\x03\x04 truncated", b"", b"plain text, not torch.save"])
def test_truncated_or_foreign_classifier_checkpoint(runs, tmp_path, content):
    (tmp_path / "model.pt").write_bytes(content)
    one_error_line(attack(runs, tmp_path / "model.pt", runs / "prior"), "attack", "model.pt", "cannot be read")


def test_truncated_classifier_checkpoint_in_a_run_directory(runs, tmp_path):
    data = (runs / "target" / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    one_error_line(attack(runs, tmp_path, runs / "prior"), "attack", "model.pt")
    one_error_line(lsmia("evaluate", "--attack", runs, "--eval-model", tmp_path), "evaluate", "model.pt")


def test_checkpoint_of_another_kind_as_classifier(runs):
    one_error_line(attack(runs, runs / "prior" / "generator.pt", runs / "prior"), "attack",
                   "not a classifier checkpoint")


def test_classifier_weights_that_do_not_fit_its_architecture(runs, tmp_path):
    ckpt = torch.load(runs / "target" / "model.pt", weights_only=True)
    ckpt["arch"]["num_classes"] += 1  # the head's weights no longer fit
    save_checkpoint(tmp_path / "model.pt", ckpt)
    one_error_line(attack(runs, tmp_path, runs / "prior"), "attack", "model.pt", "classifier checkpoint is damaged")


def test_missing_classifier_checkpoint(runs, tmp_path):
    one_error_line(attack(runs, tmp_path, runs / "prior"), "attack", "model.pt", "does not exist")


@pytest.mark.parametrize("content", [b"PK\x03\x04 truncated", b"garbage"])
def test_truncated_generator_file(runs, tmp_path, content):
    (tmp_path / "generator.pt").write_bytes(content)
    one_error_line(attack(runs, runs / "target", tmp_path / "generator.pt"), "attack", "generator.pt")
    one_error_line(attack(runs, runs / "target", tmp_path), "attack", "generator.pt")  # its run directory


def test_generator_file_of_another_kind(runs):
    one_error_line(attack(runs, runs / "target", runs / "target" / "model.pt"), "attack",
                   "not a generator checkpoint")


def test_generator_weights_that_do_not_fit_its_architecture(runs, tmp_path):
    ckpt = torch.load(runs / "prior" / "generator.pt", weights_only=True)
    ckpt["state_dict"] = {k: v[..., :1] if v.ndim else v for k, v in ckpt["state_dict"].items()}
    save_checkpoint(tmp_path / "generator.pt", ckpt)
    one_error_line(attack(runs, runs / "target", tmp_path / "generator.pt"), "attack", "generator.pt")


def test_prior_that_cannot_feed_the_target(runs, tmp_path):
    save_generator(tmp_path / "generator.pt", tiny_generator(channels=2), step=0)
    one_error_line(attack(runs, runs / "target", tmp_path), "attack", "2-channel images", "1-channel target")


# ---- experiment / audit --workers / --scheduler ------------------------------------------------------
EXPERIMENT = ["experiment", "--config", "experiment-digits", "--preset", "quick"]
AUDIT = ["audit", "--model", "model.pt", "--private", "private", "--public", "public"]  # refused before they are read


@pytest.mark.parametrize("argv", [EXPERIMENT, AUDIT], ids=["experiment", "audit"])
def test_workers_below_one(tmp_path, argv):
    one_error_line(lsmia(*argv, "--workers", "0", "--out", tmp_path), argv[0], "--workers must be >= 1, got 0")


@pytest.mark.parametrize("repeats", ["0", "-2"])
def test_audit_repeats_below_one(tmp_path, repeats):
    one_error_line(lsmia(*AUDIT, "--repeats", repeats, "--out", tmp_path / "out"), "audit",
                   f"--repeats {repeats}: the number of attack seeds must be a whole number >= 1")
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("extra, message", [
    (["--attack-suite", "nope"], "unknown attack suite 'nope'; allowed: adaptive"),
    (["--attack-suite", "adaptive", "--attacks", "ppa"], "--attacks ppa and --attack-suite adaptive: give one")])
def test_audit_attack_suite_unknown_or_with_attacks(tmp_path, extra, message):
    one_error_line(lsmia(*AUDIT, *extra, "--out", tmp_path / "out"), "audit", message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [EXPERIMENT, AUDIT], ids=["experiment", "audit"])
def test_workers_without_dask(tmp_path, monkeypatch, argv):
    monkeypatch.setitem(sys.modules, "distributed", None)  # what an environment without the [dask] extra sees
    one_error_line(lsmia(*argv, "--workers", "2", "--out", tmp_path), argv[0], "pip install '.[dask]'")


@pytest.mark.parametrize("address, message", [("tcp://127.0.0.1:1", "no Dask scheduler answers there within 10s"),
                                              ("no-such-scheduler.json", "no such scheduler file")])
def test_scheduler_nobody_answers(tmp_path, address, message):
    pytest.importorskip("distributed")
    one_error_line(lsmia(*EXPERIMENT, "--scheduler", address, "--out", tmp_path), "experiment",
                   f"--scheduler {address}: {message}")


def test_merge_file_that_is_not_a_results_json(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    one_error_line(lsmia(*EXPERIMENT, "--merge", tmp_path / "results.json", "--out", tmp_path / "merged"), "experiment",
                   f"--merge {tmp_path / 'results.json'} is not the results.json of an `lsmia experiment` run")


# ---- --out ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["train", "--config", "train-digits-target"],
    ["train-prior", "--config", "prior-digits"],
    ["experiment", "--config", "experiment-digits", "--preset", "quick"],
    ["toy"],
])
def test_out_that_is_a_file(runs, argv):
    one_error_line(lsmia(*argv, "--out", runs / "file"), argv[0], "file", "not a directory")


def test_attack_out_that_is_a_file(runs):
    one_error_line(lsmia("attack", "--target", runs / "target", "--prior", runs / "prior", "--out", runs / "file",
                         "--set", "device=cpu"), "attack", "file", "not a directory")


def test_audit_out_that_is_a_file(runs, tmp_path):
    (tmp_path / "private" / "a").mkdir(parents=True)
    one_error_line(lsmia("audit", "--model", runs / "target", "--private", tmp_path / "private", "--public",
                         tmp_path, "--out", runs / "file"), "audit", "file", "not a directory")


def test_evaluate_out_that_is_a_directory(runs, tmp_path):
    (tmp_path / "attack.json").write_text("{}")
    one_error_line(lsmia("evaluate", "--attack", tmp_path, "--eval-model", runs / "target", "--out", tmp_path),
                   "evaluate", "is a directory")


# ---- data folders --------------------------------------------------------------------------------
def _train_on(root):
    return lsmia("train", "--config", "train-digits-target", "--out", root.parent / "run", "--set", "data.name=imagefolder",
                 "--set", f"data.root={root}", "--set", "data.image_size=8", "--set", "data.private_classes=[0, 1]",
                 "--set", "data.public_classes=[]", "--set", "epochs=1", "--set", "batch_size=2")


def test_image_folder_that_does_not_exist(tmp_path):
    one_error_line(_train_on(tmp_path / "nowhere"), "train", "nowhere", "not a directory")


def test_image_folder_without_class_folders(tmp_path):
    (tmp_path / "data").mkdir()
    one_error_line(_train_on(tmp_path / "data"), "train", "holds no images")


def test_image_folder_with_an_unreadable_image(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    one_error_line(_train_on(tmp_path / "data"), "train", "broken.png", "cannot be read")


def test_audit_private_folder_that_does_not_exist(runs, tmp_path):
    one_error_line(lsmia("audit", "--model", runs / "target", "--private", tmp_path / "nope", "--public", tmp_path,
                         "--out", tmp_path / "out"), "audit", "--private", "not a directory")


# ---- run directories -----------------------------------------------------------------------------
def test_run_directory_of_another_config_names_the_keys(tmp_path):
    from lsmia_ext.train.loop import run_dir

    run_dir(digits_cfg("epochs=3", "loss.alpha=0.1"), tmp_path).claim()  # an unfinished run of another recipe
    line = one_error_line(lsmia("train", "--config", "train-digits-target", "--out", tmp_path, "--set", "epochs=1"),
                          "train", "another config")
    assert "differs in epochs, loss.alpha)" in line


def test_run_directory_of_another_package_version(tmp_path):
    write_json(tmp_path / "run.json", {"format": 99, "kind": "train", "config_hash": "x", "config": {}})
    one_error_line(lsmia("train", "--config", "train-digits-target", "--out", tmp_path), "train", "format 99")
    write_text(tmp_path / "run.json", "{ truncated")
    one_error_line(lsmia("train", "--config", "train-digits-target", "--out", tmp_path), "train", "run.json")


def test_run_directory_of_another_kind(tmp_path):
    write_json(tmp_path / "run.json", {"format": 1, "kind": "prior", "config_hash": "x", "config": {},
                                       "finished": False})
    one_error_line(lsmia("train", "--config", "train-digits-target", "--out", tmp_path), "train", "prior")


# ---- overrides -----------------------------------------------------------------------------------
@pytest.mark.parametrize("item, expected", [("epochs", "key=value"), ("epochz=3", "unknown key 'epochz'"),
                                            ("epochs=[1", "not valid YAML")])
def test_malformed_or_unknown_override(tmp_path, item, expected):
    one_error_line(lsmia("train", "--config", "train-digits-target", "--out", tmp_path, "--set", item), "train",
                   expected)


@pytest.mark.parametrize("item, expected", [("report.max_gap=2", "max_gap"), ("report.max_gap=0", "max_gap")])
def test_bad_matched_bracket_width(tmp_path, item, expected):
    one_error_line(lsmia("experiment", "--config", "experiment-digits", "--preset", "quick", "--out", tmp_path,
                         "--set", item), "experiment", expected)


@pytest.mark.parametrize("size, item, expected", [
    (60, "targets=[{name: a, alpha: 0.0, set: {data: {seed: 3}}}]", "only data.train_per_class"),
    (60, "targets=[{name: a, alpha: 0.0, set: {data: {train_per_class: 500}}}]", "got 500"),
    ("null", "targets=[{name: a, alpha: 0.0, set: {data: {train_per_class: 5}}}]", "data.train_per_class (None"),
])
def test_target_entry_may_only_lower_the_training_set(tmp_path, size, item, expected):
    one_error_line(lsmia("experiment", "--config", "experiment-digits", "--preset", "quick", "--out", tmp_path,
                         "--set", f"data.train_per_class={size}", "--set", item), "experiment", expected)


@pytest.mark.parametrize("items, expected", [
    (["defense.kind=tl_dmi", "defense.freeze_layers=9"], "defense.freeze_layers must lie in 0..4"),
    (["defense.kind=tl_dmi", "data.public_classes=[]"], "tl_dmi pretrains on public images"),
    (["defense.kind=tl_dmi", "data.public_classes=[4, 5]"], "overlap private_classes"),
    (["defense.kind=trap_mid", "defense.trap_beta=1.5"], "trap_beta"),
    (["defense.kind=random_erasing", "defense.erase_scale=[0.5, 0.2]"], "defense.erase_scale")])
def test_defense_dial_out_of_range_writes_nothing(tmp_path, items, expected):
    out = tmp_path / "run"
    one_error_line(lsmia("train", "--config", "train-digits-target", "--out", out,
                         *[a for item in items for a in ("--set", item)]), "train", expected)
    assert not out.exists()


@pytest.mark.parametrize("items, expected", [
    (["selection_score=softmax"], "selection_score"),
    (["augmentation={archs: [small_cnn, no_such_net]}"], "unknown model 'no_such_net'"),
    (["augmentation={archs: [small_cnn], sources: [public, private_train]}"], "augmentation.sources"),
    (["attack=miface", "augmentation={archs: [small_cnn]}"], "cannot use model augmentation"),
    (["attack=gmi", "selection_score=logit_margin"], "only attack 'ppa'")])
def test_adaptive_attack_options_write_nothing(runs, items, expected):
    """Issue 28's bad input: an unknown selection score, an unregistered surrogate architecture, surrogate
    data that would include private images, augmentation of an attack that cannot use it."""
    out = runs / "adaptive_out"
    one_error_line(attack(runs, runs / "target", runs / "prior", *[a for item in items for a in ("--set", item)]),
                   "attack", expected)
    assert not out.exists() and not (runs / "attack_out").exists()


@pytest.mark.parametrize("override, expected", [
    ("report.primary_reference=TL-DMI", "report.primary_reference 'TL-DMI' is no family of the targets"),
    ("attack_suite=strongest", "unknown attack suite 'strongest'; allowed: adaptive"),
    ('attack_suite={"A9": {"selection_score": "entropy"}}', "selection_score"),
    ('eval_model2={"config": "no-such-config"}', "no-such-config"),
])
def test_experiment_design_fields_name_themselves(tmp_path, override, expected):
    """Adaptive suite, second judge and primary comparison: a bad value is one line and nothing is written."""
    one_error_line(lsmia(*EXPERIMENT, "--set", "report.primary_cost=0.02", "--set", override, "--out", tmp_path / "o"),
                   "experiment", expected)
    assert not (tmp_path / "o").exists()
