"""Trainer: alpha schedule per epoch, resume equivalence after a real interruption, reuse of finished runs,
bad configs, CLI, and a 2-rank torchrun run with gloo (all on the 8x8 digits config)."""
import json

import pytest
import torch

import lsmia_ext
from conftest import digits_cfg, lsmia, torchrun_train
from lsmia_ext.config import ConfigError, available_configs, load_config
from lsmia_ext.errors import UserInputError
from lsmia_ext.models import load_classifier
from lsmia_ext.train import TrainConfig, train_classifier


def test_end_to_end_with_negative_alpha_schedule(tmp_path):
    cfg = digits_cfg("epochs=4", "loss.alpha=-0.05", "loss.warmup=1", "loss.ramp=2")
    final = train_classifier(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["alpha"] for row in metrics["epochs"]] == pytest.approx([0.0, -0.025, -0.05, -0.05])
    assert final["test_acc"] > 0.9 and 0 <= final["ece"] < 0.2 and final["wall_s"] > 0
    model = load_classifier(tmp_path)
    arch = torch.load(tmp_path / "model.pt", weights_only=True)["arch"]
    assert arch == {"name": "small_cnn", "num_classes": 5, "in_channels": 1, "image_size": 8}
    assert model.num_classes == 5
    for name in ("run.json", "data_manifest.json", "manifest.json"):
        assert (tmp_path / name).exists()
    assert not (tmp_path / "checkpoint.pt").exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]
    assert {"model", "metrics", "config", "data_manifest"} <= set(manifest)


def test_positive_alpha_is_not_warmed_up(tmp_path):
    """As in the authors' code: warm-up and ramp apply to negative alpha only; the same recipe (warmup 2,
    ramp 1) trains alpha +0.1 with 0.1 from the first epoch. The final metrics carry training accuracy."""
    schedule = lsmia_ext.AlphaSchedule(0.1, warmup=2, ramp=1)
    assert [schedule(e) for e in range(4)] == [0.1] * 4 and not schedule.warms_up
    cfg = digits_cfg("epochs=3", "loss.alpha=0.1", "loss.warmup=2", "loss.ramp=1")
    final = train_classifier(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["alpha"] for row in metrics["epochs"]] == pytest.approx([0.1, 0.1, 0.1])
    assert 0.5 < final["train_acc"] <= 1.0
    # a positive alpha needs no room for a ramp; a negative one does
    digits_cfg("epochs=2", "loss.alpha=0.1", "loss.warmup=2", "loss.ramp=2")


class Interrupt(Exception):
    pass


def test_resume_after_interruption_is_bitwise_identical(tmp_path):
    # dropout, augmentation, multistep LR and a warm-up all in play, so every piece of state matters
    over = ["epochs=3", "loss.alpha=-0.05", "loss.warmup=1", "loss.ramp=1", "schedule.name=multistep",
            "schedule.milestones=[2]", "augment.crop_scale=[0.8,1.0]", "augment.brightness=0.2"]
    cfg = digits_cfg(*over)
    reference = train_classifier(cfg, tmp_path / "straight")

    def stop_after_first(epoch, row):
        if epoch == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_classifier(cfg, tmp_path / "resumed", on_epoch_end=stop_after_first)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists() and not (tmp_path / "resumed" / "model.pt").exists()
    seen = []
    resumed = train_classifier(cfg, tmp_path / "resumed", on_epoch_end=lambda e, r: seen.append(e))
    assert seen == [1, 2]  # continued at epoch 1, did not redo epoch 0
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["model"]
    # the same ops in the same order, same process and threads, resumed from an exact copy: bit-equal
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("test_acc", "test_nll", "ece", "train_loss", "alpha"):
        assert resumed[key] == reference[key]
    # a finished run is returned without training again
    assert train_classifier(cfg, tmp_path / "resumed", on_epoch_end=lambda e, r: seen.append(e)) == resumed
    assert seen == [1, 2]
    with pytest.raises(UserInputError, match=r"another config \(differs in optim.lr\)"):
        train_classifier(digits_cfg(*over, "optim.lr=0.01"), tmp_path / "resumed")


def test_bad_configs_name_the_key_and_allowed_values():
    with pytest.raises(ConfigError, match="unknown key 'lr'.*allowed keys here: .*epochs"):
        digits_cfg("lr=0.1")
    with pytest.raises(ConfigError, match="optim.name.*'adam' or 'sgd'.*rmsprop"):
        digits_cfg("optim.name=rmsprop")
    with pytest.raises(ConfigError, match="unknown model 'vgg'; allowed"):
        digits_cfg("model.name=vgg")
    with pytest.raises(ConfigError, match="alpha = -0.05 would never be reached"):
        digits_cfg("epochs=3", "loss.alpha=-0.05", "loss.warmup=2", "loss.ramp=2")
    with pytest.raises(ConfigError, match="loss.alpha"):
        digits_cfg("loss.alpha=1.5")
    with pytest.raises(ConfigError, match="milestones"):
        digits_cfg("schedule.name=multistep", "schedule.milestones=[5]")
    with pytest.raises(ValueError, match="batch_size 4096 exceeds"):
        train_classifier(digits_cfg("batch_size=4096"), "/tmp/never-written")


def test_shipped_train_configs_validate():
    names = [n for n in available_configs() if n.startswith("train-")]
    assert {"train-fmnist-target", "train-fmnist-eval", "train-digits-target", "train-facescrub-resnet152",
            "train-celeba-resnet152"} <= set(names)
    for name in names:
        load_config(TrainConfig, name)
    face = load_config(TrainConfig, "train-facescrub-resnet152")
    assert len(face.data.private_classes) == 530 and face.schedule.milestones == [75, 90]
    assert len(load_config(TrainConfig, "train-celeba-resnet152").data.private_classes) == 1000


def test_cli_and_bf16(tmp_path):
    code, out, err = lsmia("train", "--config", "train-digits-target", "--out", tmp_path, "--set", "epochs=1",
                           "--set", "bf16=true", "--set", "num_threads=1")
    assert code == 0, err
    # out: epoch log lines, then the final metrics as JSON
    printed = json.loads(out[out.index("{"):])
    assert printed["test_acc"] > 0.5


def test_two_ranks_with_gloo(tmp_path):
    proc = torchrun_train(tmp_path / "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["final"]["world_size"] == 2
    single = train_classifier(digits_cfg(), tmp_path / "single")
    assert abs(metrics["final"]["test_acc"] - single["test_acc"]) < 0.05  # same recipe, same global batch
    assert load_classifier(tmp_path / "ddp").num_classes == 5


def test_imagefolder_training_through_dataloader(tmp_path):
    from PIL import Image

    for cls, colour in (("dark", 30), ("bright", 220)):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (20 + i, 24), (colour, colour - i, colour)).save(tmp_path / "data" / cls / f"{i}.png")
    cfg = TrainConfig.model_validate({
        "data": {"name": "imagefolder", "root": str(tmp_path / "data"), "private_classes": [0, 1],
                 "image_size": 16, "test_fraction": 0.2},
        "model": {"name": "small_cnn"}, "epochs": 2, "batch_size": 4, "num_threads": 1,
        "optim": {"lr": 0.01}, "augment": {"hflip": True, "crop_scale": [0.8, 1.0]}})
    final = train_classifier(cfg, tmp_path / "run")
    assert final["test_acc"] == 1.0  # two flat colours
    files = json.loads((tmp_path / "run" / "data_manifest.json").read_text())["private"]["train_files"]
    assert len(files) == 16


def test_validation_split_is_scored_and_changes_no_weight(tmp_path):
    over = ["epochs=2", "data.train_per_class=60"]
    plain = train_classifier(digits_cfg(*over), tmp_path / "plain")
    scored = train_classifier(digits_cfg(*over, "data.val_per_class=20"), tmp_path / "val")
    assert "val_acc" not in plain and 0.0 <= scored["val_acc"] <= 1.0
    hist = json.loads((tmp_path / "val" / "metrics.json").read_text())["epochs"]
    assert all("val_acc" in row for row in hist)
    # The validation forward passes are no-grad, eval-mode and draw no random numbers: the training computes
    # the same operations in the same order, so the weights are bit-equal by construction.
    a = torch.load(tmp_path / "plain" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "val" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert plain["test_acc"] == scored["test_acc"]
