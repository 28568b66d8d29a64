"""Issue 28's attack machinery: logit-margin selection, model augmentation (surrogates distilled on
attacker-side images, the ensemble loss and scores), the stronger budget, the adaptive suite, and what
attack.json records of them."""
from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from test_attacks import (TinyTarget, generator, mid_target, one_thread, scenario, small_cfg,  # noqa: F401
                          target)
from lsmia_ext.attacks import load_attack_config, run_attack
from lsmia_ext.attacks.config import AugmentationConfig
from lsmia_ext.attacks.descent import descend
from lsmia_ext.attacks.identity import ensemble_loss, ensemble_members, identity_loss, max_margin_loss
from lsmia_ext.attacks.ppa import final_selection, initial_selection
from lsmia_ext.attacks.results import RESULT_KEYS
from lsmia_ext.attacks.suite import ADAPTIVE, STRONG_BUDGET, SURROGATES_ONLY, suite_overrides
from lsmia_ext.attacks.surrogates import attacker_images, distill_surrogates, load_surrogates, surrogate_hash
from lsmia_ext.attacks.views import class_scores, logit_margins, scores
from lsmia_ext.config import config_hash, read_yaml, resolve_config_path
from lsmia_ext.data import DataConfig
from lsmia_ext.errors import UserInputError
from lsmia_ext.models import load_classifier
from lsmia_ext.runio import load_checkpoint, read_json

DIGITS = DataConfig(name="digits", private_classes=[0, 1, 2, 3, 4], public_classes=[5, 6, 7, 8, 9], image_size=8)
FAST_AUG = {"archs": ["small_cnn", "small_cnn_w2"], "steps": 30, "prior_samples": 200, "holdout": 50}


class FixedLogits(nn.Module):
    """A linear classifier of the flattened image with given weights: logits by hand."""

    def __init__(self, weight, image_size=2):
        super().__init__()
        self.num_classes, self.in_channels, self.image_size = weight.shape[0], 1, image_size
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(weight)

    def forward(self, x):
        return self.linear(x.flatten(1))


# ----------------------------------------------------------------------------- selection score
# Class 0 of two candidates (3 classes): A = [5, 4, -20] has the higher softmax confidence (1 / (1 + e^-1 +
# e^-25) = 0.731 against e^2 / (e^2 + 2 e^0.5) = 0.691) but the lower margin (1 against 1.5) than B = [2, .5, .5].
LOGITS = torch.tensor([[5.0, 4.0, -20.0], [2.0, 0.5, 0.5]])


def test_logit_margins_by_hand_and_ties():
    torch.testing.assert_close(logit_margins(LOGITS), torch.tensor([[1.0, -1.0, -25.0], [1.5, -1.5, -1.5]]))
    tie = torch.tensor([[3.0, 3.0, 1.0]])
    torch.testing.assert_close(logit_margins(tie), torch.tensor([[0.0, 0.0, -2.0]]))


def test_confidence_and_margin_rank_a_hand_case_differently_and_margin_ignores_temperature():
    pool = torch.arange(2.0)[:, None]  # the latent of candidate i is i
    classes = torch.tensor([0])
    picked = {}
    for score in ("confidence", "logit_margin"):
        w, _ = initial_selection(pool, class_scores(LOGITS, score), classes, keep=1)
        picked[score] = int(w.item())
    assert picked == {"confidence": 0, "logit_margin": 1}
    for s in (7.0, 0.01):  # any positive temperature: margins scale, their ranking does not move
        torch.testing.assert_close(class_scores(LOGITS * s, "logit_margin"), s * class_scores(LOGITS, "logit_margin"))
        w, _ = initial_selection(pool, class_scores(LOGITS * s, "logit_margin"), classes, keep=1)
        assert int(w.item()) == 1
    # while a temperature reorders confidences: x7 saturates both (A 0.9991, B 0.9999) and B's wins
    w, _ = initial_selection(pool, class_scores(LOGITS * 7, "confidence"), classes, keep=1)
    assert int(w.item()) == 1


def test_initial_selection_records_confidences_of_what_the_margin_kept():
    pool = torch.arange(2.0)[:, None]
    conf = class_scores(LOGITS, "confidence")
    _, recorded = initial_selection(pool, class_scores(LOGITS, "logit_margin"), torch.tensor([0]), 1, conf)
    torch.testing.assert_close(recorded, conf[1:2, :1])


def test_scores_average_the_members_and_the_mirrored_view():
    weight_a = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    weight_b = torch.tensor([[0, 0, 2.0, 0], [0, 0, 0, 1.0]])
    a, b = FixedLogits(weight_a), FixedLogits(weight_b)
    x = torch.tensor([[[[0.9, 0.1], [0.3, 0.6]]]])  # pixels (0.9, 0.1, 0.3, 0.6); mirrored (0.1, 0.9, 0.6, 0.3)
    got = scores([a, b], x, hflip=True, batch_size=8, score="logit_margin")
    # margins of class 0: a 0.8, b 0.0; mirrored: a -0.8, b 0.9; mean over members, then over the two views
    assert got[0, 0].item() == pytest.approx(((0.8 + 0.0) / 2 + (-0.8 + 0.9) / 2) / 2, abs=1e-6)
    torch.testing.assert_close(got[0, 1], -got[0, 0])  # two classes: margins are opposite


def test_final_selection_ranks_by_the_margin(target, generator, scenario):
    """Final selection with logit_margin equals the top-M per class of the mean margin over the same views."""
    cfg = small_cfg(selection_score="logit_margin", final=dict(keep=2, transforms=3))
    x, y = scenario.tensors("private_train")
    images = torch.cat([x[y == c][:5] for c in range(2)])
    labels = torch.arange(2).repeat_interleave(5)
    keep = final_selection(cfg, target, images, labels, 2, torch.Generator().manual_seed(0))
    from lsmia_ext.attacks.views import draw_views, random_view

    rng, score = torch.Generator().manual_seed(0), torch.zeros(10)
    for _ in range(3):
        view = random_view(images, 1, 8, cfg.final.crop_scale, cfg.final.crop_ratio, 0.0, draw_views(10, rng))
        score += logit_margins(target(view)).gather(1, labels[:, None]).squeeze(1)
    expected = (score.view(2, 5).topk(2, dim=1).indices + torch.tensor([[0], [5]])).reshape(-1)
    assert keep.tolist() == expected.tolist()


# ----------------------------------------------------------------------------- ensemble loss
def test_ensemble_loss_is_the_mean_of_the_members_losses_by_hand():
    a = FixedLogits(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0]]))
    b = FixedLogits(torch.tensor([[0, 0, 0, 2.0], [1.0, 1.0, 0, 0], [0, 0, 0, 0]]))
    x = torch.tensor([[0.5, 0.2, 0.1, 0.3], [0.0, 1.0, 0.4, 0.4]]).view(2, 1, 2, 2)
    y = torch.tensor([0, 2])
    # a: logits (0.5, 0.2, 0.4), (0, 1, 0.8); b: (0.6, 0.7, 0), (0.8, 1, 0)
    # max_margin = max other - own: a (0.4 - 0.5, 1 - 0.8) = (-0.1, 0.2); b (0.7 - 0.6, 1 - 0) = (0.1, 1.0)
    got = ensemble_loss(max_margin_loss, [a, b], x, y)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.6]))
    for name in ("poincare", "ce"):
        fn = identity_loss(name)
        torch.testing.assert_close(ensemble_loss(fn, [a, b], x, y), (fn(a(x), y) + fn(b(x), y)) / 2)
    torch.testing.assert_close(ensemble_loss(max_margin_loss, [a], x, y), max_margin_loss(a(x), y))


def test_descent_uses_the_surrogates(target, generator):
    cfg = small_cfg(optim=dict(steps=15, loss="max_margin"))
    start = torch.randn(6, generator.w_dim, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(3).repeat_interleave(2)

    def run(surrogates):
        return descend(cfg, target, start, labels, generator.synthesis, torch.Generator().manual_seed(2),
                       surrogates=surrogates)

    alone = run(())
    torch.testing.assert_close(run([target]), alone)  # the mean of two equal losses is that loss
    torch.manual_seed(5)
    other = TinyTarget().eval()
    # the same computation repeats to the bit; another member moves the latents by far more than rounding
    assert (run([other]) - alone).abs().max() > 1e-4


def test_surrogates_only_leaves_the_target_out_of_the_loss(target, generator):
    """S3 (augmentation.include_target false): descending with the target and one surrogate is descending on
    that surrogate alone; the target's weights take no part."""
    only = small_cfg(optim=dict(steps=10, loss="max_margin"), augmentation={**FAST_AUG, "include_target": False})
    start = torch.randn(6, generator.w_dim, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(3).repeat_interleave(2)
    torch.manual_seed(5)
    other = TinyTarget().eval()
    assert ensemble_members(only, target, [other]) == [other]
    assert ensemble_members(small_cfg(augmentation=FAST_AUG), target, [other]) == [target, other]
    with pytest.raises(ValueError, match="no surrogates"):  # never a silent fall back to the target
        ensemble_members(only, target, [])

    def run(cfg, model, surrogates):
        return descend(cfg, model, start, labels, generator.synthesis, torch.Generator().manual_seed(2),
                       surrogates=surrogates)

    plain = small_cfg(optim=dict(steps=10, loss="max_margin"))
    torch.testing.assert_close(run(only, target, [other]), run(plain, other, []))
    assert (run(only, target, [other]) - run(plain, target, [])).abs().max() > 1e-4


def test_surrogates_only_attack_runs_and_records_it(target, generator, tmp_path):
    torch.manual_seed(3)
    given = [TinyTarget().eval(), TinyTarget().eval()]
    cfg = small_cfg(selection_score="logit_margin", optim=dict(steps=3), augmentation={**FAST_AUG, "include_target": False})
    summary = run_attack(cfg, target, generator, tmp_path / "run", surrogates=given)
    assert summary["options"]["augmentation"]["include_target"] is False
    assert summary["num_images"] == 5 * 3


# ----------------------------------------------------------------------------- surrogates
@pytest.fixture(scope="module")
def distilled(target, generator, scenario, tmp_path_factory):
    aug = AugmentationConfig(**FAST_AUG)
    out = tmp_path_factory.mktemp("surrogates")
    return aug, out, distill_surrogates(aug, target, generator, scenario, out)


def test_surrogates_never_see_a_private_image(distilled, target, generator, scenario):
    aug, _, summary = distilled
    train_x, held, counts = attacker_images(aug, target, generator, scenario)
    # the exact tensor the surrogates were trained on (its sha256 is in the summary)
    assert hashlib.sha256(train_x.float().contiguous().numpy().tobytes()).hexdigest() == summary["train_sha256"]
    private = torch.cat([scenario.tensors(s)[0] for s in ("private_train", "private_val", "private_test")]).flatten(1)
    for images in (train_x, *held.values()):
        same = (images.flatten(1)[:, None, :] == private[None]).all(dim=2)
        assert not same.any()
    n_public = len(scenario.public_train)
    assert counts["public"]["train"] + counts["public"]["held_out"] == n_public
    assert counts["prior"]["train"] + counts["prior"]["held_out"] == aug.prior_samples + aug.holdout


def test_a_private_image_among_the_public_ones_is_dropped(target, generator, scenario, monkeypatch):
    private_x, _ = scenario.tensors("private_train")
    public_x, public_y = scenario.tensors("public_train")
    original = scenario.tensors

    def leaky(split):
        if split == "public_train":
            return torch.cat([public_x, private_x[:3]]), torch.cat([public_y, public_y[:3]])
        return original(split)

    monkeypatch.setattr(scenario, "tensors", leaky)
    aug = AugmentationConfig(**{**FAST_AUG, "sources": ["public"]})
    train_x, held, counts = attacker_images(aug, target, generator, scenario)
    assert counts["public"]["dropped_private_duplicates"] == 3
    assert train_x.shape[0] + held["public"].shape[0] == public_x.shape[0]


def test_surrogates_are_classifier_checkpoints_that_agree_with_the_target(distilled, target):
    aug, out, summary = distilled
    models = load_surrogates(out)
    assert [m["arch"] for m in summary["surrogates"]] == aug.archs and len(models) == 2
    for m, record in zip(models, summary["surrogates"]):
        assert (m.num_classes, m.in_channels, m.image_size) == (5, 1, 8)
        assert not m.training and not any(p.requires_grad for p in m.parameters())
        reloaded = load_classifier(out / record["path"])
        x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(reloaded(x), m(x))
        # better than chance (1/5) on held-out attacker-side images after 30 steps
        assert record["agreement_held_out"]["public"] > 0.4
    # a finished directory of the same config is returned as is
    assert distill_surrogates(aug, target, None, None, out) == summary


def test_surrogate_hash_follows_every_input():
    aug = AugmentationConfig(**FAST_AUG)
    base = surrogate_hash(aug, "t", "p")
    assert base == config_hash({"augmentation": aug.model_dump(mode="json"), "target": "t", "prior": "p"})
    others = {surrogate_hash(aug, "t2", "p"), surrogate_hash(aug, "t", "p2"), surrogate_hash(aug, "t", "p", {"x": 1}),
              surrogate_hash(AugmentationConfig(**{**FAST_AUG, "steps": 31}), "t", "p")}
    assert base not in others and len(others) == 4
    # S3 distils nothing of its own: the same surrogates serve the attack with and without the target
    assert surrogate_hash(AugmentationConfig(**FAST_AUG, include_target=False), "t", "p") == base


# ----------------------------------------------------------------------------- the attack
def test_augmented_attack_distils_its_own_surrogates_and_records_its_options(target, generator, tmp_path):
    cfg = small_cfg(selection_score="logit_margin", optim=dict(loss="max_margin", steps=4), augmentation=FAST_AUG)
    # the data config as `lsmia attack` reads it from the target's run directory: a plain mapping
    summary = run_attack(cfg, target, generator, tmp_path / "run", data_config=DIGITS.model_dump(mode="json"))
    record = read_json(tmp_path / "run" / "attack.json")
    expected = {"selection_score": "logit_margin", "loss": "max_margin",
                "augmentation": {"archs": ["small_cnn", "small_cnn_w2"], "sources": ["public", "prior"]},
                "budget": {"candidates": 64, "keep": 6, "steps": 4}}
    assert record["options"] == expected and summary["options"] == expected
    assert record["surrogates"]["count"] == 2
    assert record["surrogates"]["distilled_here"]["surrogates"][1]["arch"] == "small_cnn_w2"
    assert len(load_surrogates(tmp_path / "run" / "surrogates")) == 2
    assert summary["num_images"] == 5 * 3


def test_attack_takes_given_surrogates_and_refuses_them_without_augmentation(target, generator, tmp_path):
    torch.manual_seed(3)
    given = [TinyTarget().eval()]
    cfg = small_cfg(optim=dict(steps=3), augmentation=FAST_AUG)
    run_attack(cfg, target, generator, tmp_path / "run", surrogates=given)
    record = read_json(tmp_path / "run" / "attack.json")
    assert record["surrogates"] == {"count": 1, "distilled_here": None}
    assert not (tmp_path / "run" / "surrogates").exists()
    with pytest.raises(ValueError, match="sets no augmentation"):
        run_attack(small_cfg(), target, generator, tmp_path / "other", surrogates=given)
    with pytest.raises(UserInputError, match="data config"):
        run_attack(cfg, target, generator, tmp_path / "third")


def test_shipped_ppa_records_its_default_options(target, generator, tmp_path):
    run_attack(small_cfg(optim=dict(steps=2)), target, generator, tmp_path / "run")
    assert read_json(tmp_path / "run" / "attack.json")["options"] == {
        "selection_score": "confidence", "loss": "poincare", "augmentation": None,
        "budget": {"candidates": 64, "keep": 6, "steps": 2}}


# ----------------------------------------------------------------------------- config, budget, suite
def test_new_options_leave_the_dump_of_configs_without_them_unchanged():
    plain = small_cfg().model_dump(mode="json")
    assert "selection_score" not in plain and "augmentation" not in plain
    adaptive = small_cfg(selection_score="logit_margin", augmentation={"archs": ["small_cnn"]}).model_dump(mode="json")
    assert adaptive["selection_score"] == "logit_margin"
    assert adaptive["augmentation"]["archs"] == ["small_cnn"]
    assert adaptive["augmentation"]["sources"] == ["public", "prior"]
    assert "include_target" not in adaptive["augmentation"]  # the default leaves A2/A3's hashes as they were
    s3 = small_cfg(augmentation={"archs": ["small_cnn"], "include_target": False}).model_dump(mode="json")
    assert s3["augmentation"]["include_target"] is False


def test_strong_budget_is_attack_ppa_with_twice_the_steps_and_four_times_the_candidates():
    base = read_yaml(resolve_config_path("attack-ppa"))
    strong = read_yaml(resolve_config_path("attack-ppa-strong"))
    assert strong["optim"]["steps"] == 2 * base["optim"]["steps"]
    assert strong["initial"]["candidates"] == 4 * base["initial"]["candidates"]
    assert load_attack_config("attack-ppa-strong") == load_attack_config("attack-ppa", STRONG_BUDGET)


def test_adaptive_suite_validates_and_builds_each_attack():
    suite = suite_overrides("adaptive")
    assert list(suite) == ["A0", "A1-loss", "A1", "A2", "A3"]
    cfgs = {name: load_attack_config("attack-ppa", o) for name, o in suite.items()}
    assert cfgs["A0"] == load_attack_config("attack-ppa")
    assert (cfgs["A1-loss"].optim.loss, cfgs["A1-loss"].selection_score) == ("max_margin", "confidence")
    assert (cfgs["A1"].optim.loss, cfgs["A1"].selection_score) == ("max_margin", "logit_margin")
    aug = cfgs["A2"].augmentation
    assert len(set(aug.archs)) == 2 and set(aug.sources) == {"public", "prior"}
    assert cfgs["A3"].model_copy(update={"initial": cfgs["A2"].initial, "optim": cfgs["A2"].optim}) == cfgs["A2"]
    assert cfgs["A3"].optim.steps == 2 * cfgs["A2"].optim.steps
    assert suite_overrides(["A0", "A3"]) == {"A0": {}, "A3": ADAPTIVE["A3"]}
    assert suite_overrides({"mine": {"optim.steps": 3}}) == {"mine": {"optim.steps": 3}}
    suite["A0"]["optim.steps"] = 1  # a copy: the shipped suite cannot be edited through it
    assert ADAPTIVE["A0"] == {}
    more = suite_overrides("adaptive+S3")
    assert list(more) == ["A0", "A1-loss", "A1", "A2", "A3", "S3"] and more["S3"] == SURROGATES_ONLY
    s3 = load_attack_config("attack-ppa", more["S3"])
    assert s3.augmentation.include_target is False
    assert s3.model_copy(update={"augmentation": cfgs["A3"].augmentation}) == cfgs["A3"]
    assert suite_overrides(["A3", "S3"])["S3"] == SURROGATES_ONLY


@pytest.mark.parametrize("arg, message", [
    ("nope", "unknown attack suite 'nope'; allowed: adaptive"),
    (["A0", "A9"], "allowed: A0, A1-loss, A1, A2, A3"),
    ({"bad name!": {}}, "attack name 'bad name!'"),
    ({"x": {"optim.nope": 1}}, "nope"),
    ({"x": {"selection_score": "max"}}, "selection_score")])
def test_adaptive_suite_bad_names(arg, message):
    with pytest.raises(UserInputError, match=message.replace("(", r"\(")):
        suite_overrides(arg)


def test_mid_target_with_sampling_still_attacks_with_the_adaptive_options(mid_target, generator, tmp_path):
    torch.manual_seed(3)
    given = [TinyTarget().eval()]
    adaptive = dict(selection_score="logit_margin", optim=dict(loss="max_margin"), augmentation=FAST_AUG)
    res = {}
    for name, sampling in (("mean", False), ("sampled", True), ("again", True)):
        cfg = small_cfg(target_sampling=sampling, **adaptive)
        run_attack(cfg, mid_target, generator, tmp_path / name, classes=[0, 3], surrogates=given)
        res[name] = load_checkpoint(tmp_path / name / "results.pt")
        assert read_json(tmp_path / name / "attack.json")["target_sampling"] == {"on": sampling, "mid_bottlenecks": 1}
    for key in RESULT_KEYS:  # seeded bottleneck noise: the sampled adaptive attack repeats exactly
        assert torch.equal(res["sampled"][key], res["again"][key]), key
    assert not torch.equal(res["sampled"]["initial_confidences"], res["mean"]["initial_confidences"])
