"""Model inversion attacks on tiny real models: a CNN trained on the 8x8 digits 0-4 (the target) and a
PCA generator fitted to digits 5-9 (the public prior), as in GMI's MNIST protocol."""
from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import lsmia
from lsmia_ext.attacks import AttackConfig, load_attack_config, run_attack
from lsmia_ext.attacks.descent import descend
from lsmia_ext.attacks.identity import ce_loss, identity_loss, max_margin_loss, poincare_loss
from lsmia_ext.attacks.miface import total_variation
from lsmia_ext.attacks.ppa import candidate_pool, final_selection, initial_selection
from lsmia_ext.attacks.results import RESULT_KEYS
from lsmia_ext.attacks.views import confidences, draw_views, match_channels, random_resized_crop
from lsmia_ext.config import ConfigError, available_configs
from lsmia_ext.priors.interface import Generator
from lsmia_ext.runio import load_checkpoint, read_json


# ----------------------------------------------------------------------------- tiny real models
@pytest.fixture(scope="module")
def scenario():
    """GMI's protocol on the 8x8 digits: the target learns 0-4, the prior only ever sees 5-9."""
    from lsmia_ext.data import DataConfig, load_scenario

    return load_scenario(DataConfig(name="digits", private_classes=[0, 1, 2, 3, 4],
                                    public_classes=[5, 6, 7, 8, 9], image_size=8))


class TinyTarget(nn.Module):
    """Classifier interface of lsmia_ext.models: features, forward, num_classes/in_channels/image_size."""

    def __init__(self, num_classes=5, in_channels=1, image_size=8):
        super().__init__()
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size
        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(16 * (image_size // 2) ** 2, 32), nn.ReLU())
        self.head = nn.Linear(32, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


class PCAGenerator(Generator):
    """A linear prior: w scales the top principal components of the public images (w ~ N(0, I) gives
    data-like variation); one w shared by num_ws layers."""

    def __init__(self, images, w_dim=12, num_ws=2):
        super().__init__()
        self.z_dim = self.w_dim = w_dim
        self.num_ws, self.image_size, self.channels = num_ws, images.shape[-1], images.shape[1]
        flat = images.flatten(1)
        mean = flat.mean(0)
        _, s, v = torch.linalg.svd(flat - mean, full_matrices=False)
        self.register_buffer("mean", mean)
        self.register_buffer("components", v[:w_dim] * (s[:w_dim, None] / math.sqrt(len(flat) - 1)))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def _map(self, z):
        return z

    def _synthesise(self, ws):
        flat = self.mean + ws.mean(dim=1) @ self.components
        return flat.clamp(0, 1).view(-1, self.channels, self.image_size, self.image_size)


class LinearDiscriminator(nn.Module):
    """Realness logit (B,): how close an image's pixels are to the public mean (a fixed, real critic)."""

    def __init__(self, mean_image):
        super().__init__()
        self.register_buffer("mean_image", mean_image)

    def forward(self, images):
        return 2.0 - 20 * (images - self.mean_image).square().flatten(1).mean(1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: a second thread only adds synchronisation on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def target(scenario):
    torch.manual_seed(0)
    x, y = scenario.tensors("private_train")
    net = TinyTarget()
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    assert (net(x).argmax(1) == y).float().mean() > 0.95
    return net


@pytest.fixture(scope="module")
def generator(scenario):
    x, _ = scenario.tensors("public_train")
    return PCAGenerator(x).eval()


def small_cfg(**changes) -> AttackConfig:
    base = dict(attack="ppa", seed=3, hflip=False, classes_per_batch=5, device="cpu",
                initial=dict(candidates=64, keep=6), optim=dict(steps=15, lr=0.05),
                final=dict(keep=3, transforms=4))
    for key, value in changes.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    return AttackConfig.model_validate(base)


# ----------------------------------------------------------------------------- identity losses
def test_poincare_loss_matches_hand_computation():
    def by_hand(u, v):
        d = 2 * sum((a - b) ** 2 for a, b in zip(u, v)) / ((1 - sum(a * a for a in u)) * (1 - sum(b * b for b in v)))
        return math.acosh(1 + d)

    logits = torch.tensor([[2.0, 1.0, 1.0], [3.0, 1.0, -4.0]])
    labels = torch.tensor([0, 1])
    expected = [by_hand([0.5, 0.25, 0.25], [0.9999, 0, 0]), by_hand([0.375, 0.125, -0.5], [0, 0.9999, 0])]
    assert expected[0] == pytest.approx(9.3926119, abs=1e-6)
    assert poincare_loss(logits, labels).tolist() == pytest.approx(expected, rel=1e-5)
    # the loss falls as the logits move toward the attacked class
    assert poincare_loss(torch.tensor([[2.0, 0.1, 0.1]]), labels[:1]) < poincare_loss(logits[:1], labels[:1])


def test_ce_and_max_margin_match_hand_computation():
    logits = torch.tensor([[2.0, 1.0, 1.0], [2.0, 1.0, 3.0], [2.0, 1.0, 3.0]])
    labels = torch.tensor([0, 0, 2])
    assert ce_loss(logits[:1], labels[:1]).item() == pytest.approx(math.log(1 + 2 * math.exp(-1)), rel=1e-6)
    assert max_margin_loss(logits, labels).tolist() == pytest.approx([-1.0, 1.0, -1.0])


def test_identity_losses_reject_bad_input():
    with pytest.raises(ValueError, match="unknown identity loss 'l2'"):
        identity_loss("l2")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        poincare_loss(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="logits of shape"):
        ce_loss(torch.zeros(3), torch.tensor([0]))


# ----------------------------------------------------------------------------- views
def test_full_crop_is_identity_and_flip_mirrors():
    x = torch.rand(4, 3, 8, 8)
    rng = torch.Generator().manual_seed(0)
    same = random_resized_crop(x, 8, (1.0, 1.0), (1.0, 1.0), 0.0, draw_views(4, rng))
    torch.testing.assert_close(same, x)
    mirrored = random_resized_crop(x, 8, (1.0, 1.0), (1.0, 1.0), 1.0, draw_views(4, rng))
    torch.testing.assert_close(mirrored, x.flip(-1))
    crops = random_resized_crop(x, 16, (0.5, 0.9), (0.8, 1.2), 0.5, draw_views(4, rng))
    assert crops.shape == (4, 3, 16, 16) and not torch.allclose(crops[:, :, ::2, ::2], x)


def test_channel_matching():
    grey = torch.rand(2, 1, 5, 5)
    assert torch.equal(match_channels(grey, 3), grey.expand(-1, 3, -1, -1))  # a view, no arithmetic
    rgb = torch.zeros(1, 3, 2, 2)
    rgb[:, 1] = 1.0
    assert match_channels(rgb, 1).flatten().tolist() == pytest.approx([0.587] * 4)
    with pytest.raises(ValueError, match="cannot show 2-channel images to a 3-channel target"):
        match_channels(torch.rand(1, 2, 4, 4), 3)


# ----------------------------------------------------------------------------- PPA stages
def test_initial_selection_keeps_top_n_per_class():
    g = torch.Generator().manual_seed(1)
    pool = torch.randn(30, 4, generator=g)
    conf = torch.rand(30, 6, generator=g)
    w, kept = initial_selection(pool, conf, torch.tensor([4, 1]), keep=5)
    assert w.shape == (10, 4) and kept.shape == (2, 5)
    for row, c in enumerate([4, 1]):
        order = conf[:, c].argsort(descending=True)[:5]
        torch.testing.assert_close(w[row * 5:(row + 1) * 5], pool[order])
        torch.testing.assert_close(kept[row], conf[order, c])


class BrightnessTarget(nn.Module):
    """Class 0 grows with the image's mean brightness, class 1 with its darkness; crops of a
    constant image do not change either."""

    num_classes, in_channels, image_size = 2, 1, 8

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([10 * m, -10 * m], dim=1)


def test_final_selection_ranks_by_mean_confidence():
    levels = torch.tensor([0.3, 0.9, 0.1, 0.6, 0.8, 0.2, 0.7, 0.05, 0.4, 0.95, 0.5, 0.15])
    images = levels[:, None, None, None].expand(-1, 1, 8, 8).contiguous()
    labels = torch.tensor([0] * 6 + [1] * 6)
    cfg = small_cfg(final=dict(keep=2, transforms=3), hflip=True)
    keep = final_selection(cfg, BrightnessTarget(), images, labels, 2, torch.Generator().manual_seed(0))
    assert sorted(keep[:2].tolist()) == [1, 4]   # brightest of class 0: 0.9, 0.8
    assert sorted(keep[2:].tolist()) == [7, 11]  # darkest of class 1: 0.05, 0.15


@pytest.mark.parametrize("loss", ["poincare", "ce", "max_margin"])
def test_optimisation_raises_target_confidence(target, generator, loss):
    cfg = small_cfg(optim=dict(steps=20, loss=loss, lr=0.05))
    w = candidate_pool(cfg, generator, seed=0, device=torch.device("cpu"))[:20]
    labels = torch.arange(5).repeat_interleave(4)

    def conf(latents):
        return confidences(target, generator.synthesis(latents), False, 64).gather(1, labels[:, None]).mean()

    w_new = descend(cfg, target, w, labels, generator.synthesis, torch.Generator().manual_seed(0))
    assert conf(w_new) > conf(w) + 0.3
    # micro-batches only bound memory: the same rows get the same views and the same gradients
    chunked = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"micro_batch": 7})})
    w_chunked = descend(chunked, target, w, labels, generator.synthesis, torch.Generator().manual_seed(0))
    torch.testing.assert_close(w_chunked, w_new, rtol=1e-3, atol=1e-4)  # float summation order only


# ----------------------------------------------------------------------------- end to end
def test_ppa_writes_run_dir_and_beats_initial_confidence(target, generator, tmp_path):
    cfg = small_cfg()
    summary = run_attack(cfg, target, generator, tmp_path, classes=[4, 0, 2], data_config={"name": "digits"})
    res = load_checkpoint(tmp_path / "results.pt")
    assert res["images"].shape == (9, 1, 8, 8) and res["images"].dtype == torch.float32
    assert 0 <= res["images"].min() and res["images"].max() <= 1
    assert res["labels"].tolist() == [4] * 3 + [0] * 3 + [2] * 3
    assert res["latents"].shape == (9, generator.w_dim)
    assert res["initial_confidences"].shape == (3, 6)
    # every candidate the initial selection kept, before optimisation, grouped by class, best first: their
    # target confidences are the initial selection's (row for row), below the final images'
    init = res["initial_selection_images"]
    assert init.shape == (18, 1, 8, 8) and res["initial_selection_labels"].tolist() == [4] * 6 + [0] * 6 + [2] * 6
    init_conf = target(init).softmax(1).gather(1, res["initial_selection_labels"][:, None]).squeeze(1)
    torch.testing.assert_close(init_conf, res["initial_confidences"].reshape(-1), rtol=1e-4, atol=1e-5)
    assert init_conf.mean() < res["confidences"].mean()
    # optimisation + selection end far above the candidates' start and far above chance (1/5)
    assert res["confidences"].mean() > 0.9 > res["initial_confidences"].mean() + 0.2
    torch.testing.assert_close(target(res["images"]).softmax(1).gather(1, res["labels"][:, None]).squeeze(1),
                               res["confidences"])
    record = read_json(tmp_path / "attack.json")
    assert record["attack"] == "ppa" and record["classes"] == [4, 0, 2] and record["seed"] == 3
    assert record["settings"]["data"] == {"name": "digits"} and record["settings"]["optim"]["steps"] == 15
    assert record["timings"]["images_x_steps_per_s"] > 0 and record["timings"]["image_steps"] == 3 * 6 * 15
    assert all((tmp_path / "grids" / f"class_{c}.png").stat().st_size > 0 for c in (4, 0, 2))
    assert summary["num_images"] == 9 and set(summary["per_class_confidence"]) == {4, 0, 2}


def test_initial_selection_accuracy_does_not_depend_on_the_final_selection(target, generator, scenario, tmp_path):
    """"Before optimisation" is scored on every candidate the initial selection kept (keep x classes images):
    two attacks with the same initial settings and seed but another final selection (and optimisation)
    score the same initial accuracy, while their final images differ. Same code path and seed up to the
    initial selection, so the initial images are bit-equal."""
    from lsmia_ext.metrics import EvaluateConfig, KesConfig, build_reference, score_attack
    from lsmia_ext.metrics.evaluate import INITIAL_SELECTION, load_attack_results, load_initial_images

    runs = {"a": small_cfg(final=dict(keep=3, transforms=4)),
            "b": small_cfg(final=dict(keep=2, transforms=9, crop_scale=(0.3, 0.6)), optim=dict(steps=5))}
    torch.manual_seed(1)
    eval_model = TinyTarget().eval()  # any fixed classifier: the point is what it is applied to
    ref = build_reference(eval_model, scenario)
    cfg = EvaluateConfig(kes=KesConfig(steps=2, batch_size=8), kid_bootstrap=20, kid_subsets=5)
    scores = {}
    for name, acfg in runs.items():
        run_attack(acfg, target, generator, tmp_path / name, classes=[4, 0, 2])
        _, images, labels = load_attack_results(tmp_path / name)
        initial = load_initial_images(tmp_path / name, images, labels)
        assert initial[2] == INITIAL_SELECTION and initial[0].shape[0] == 6 * 3
        scores[name] = score_attack(images, labels, eval_model, ref, cfg, initial), initial
    (a, init_a), (b, init_b) = scores["a"], scores["b"]
    assert torch.equal(init_a[0], init_b[0]) and torch.equal(init_a[1], init_b[1])
    assert (a["n_images"], b["n_images"]) == (9, 6) and a["n_initial"] == b["n_initial"] == 18
    for key in ("acc1_initial", "acc5_initial"):
        assert a[key] == b[key], key
    assert a["initial_scored_on"] == b["initial_scored_on"] == INITIAL_SELECTION


def test_resume_after_interruption_gives_identical_results(target, generator, tmp_path, monkeypatch):
    from lsmia_ext.attacks import ATTACKS
    from lsmia_ext.attacks.config import Attack

    cfg = small_cfg(classes_per_batch=2)
    run_attack(cfg, target, generator, tmp_path / "whole")
    calls = []
    real = ATTACKS.get("ppa")

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real.attack_batch(*args, **kwargs)

    monkeypatch.setitem(ATTACKS._entries, "ppa", Attack(interrupted, needs_prior=True))
    with pytest.raises(KeyboardInterrupt):
        run_attack(cfg, target, generator, tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "results.pt").exists()
    monkeypatch.setitem(ATTACKS._entries, "ppa", real)
    summary = run_attack(cfg, target, generator, tmp_path / "resumed")
    assert summary["resumed_batches"] == 1
    whole, resumed = (load_checkpoint(tmp_path / d / "results.pt") for d in ("whole", "resumed"))
    for key in RESULT_KEYS:
        assert torch.equal(whole[key], resumed[key]), key  # the same batches through the same code and threads
    with pytest.raises(ValueError, match=r"another config \(differs in settings.seed\)"):
        run_attack(small_cfg(classes_per_batch=2, seed=4), target, generator, tmp_path / "resumed")


def _rank_worker(rank, world, port, state_path, out_dir):
    import torch.distributed as tdist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        state = torch.load(state_path, weights_only=False)
        run_attack(state["cfg"], state["target"], state["generator"], out_dir)
    finally:
        tdist.destroy_process_group()


def test_sharding_splits_batches_by_rank_and_rank0_gathers(target, generator, tmp_path, monkeypatch):
    """The sharding logic in one process: rank 1 of 2 runs first and writes only its batch; rank 0
    then runs its batches and assembles everything (the real 2-process run is the slow test below)."""
    from lsmia_ext import dist

    cfg = small_cfg(classes_per_batch=2)
    run_attack(cfg, target, generator, tmp_path / "single")
    monkeypatch.setattr(dist, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "rank", lambda: 1)
    monkeypatch.setattr(dist, "is_main", lambda: False)
    summary = run_attack(cfg, target, generator, tmp_path / "sharded")
    assert "num_images" not in summary and not (tmp_path / "sharded" / "results.pt").exists()
    assert [p.name for p in (tmp_path / "sharded" / "partial").iterdir()] == ["batch_001.pt"]
    monkeypatch.setattr(dist, "rank", lambda: 0)
    monkeypatch.setattr(dist, "is_main", lambda: True)
    run_attack(cfg, target, generator, tmp_path / "sharded")
    single, sharded = (load_checkpoint(tmp_path / d / "results.pt") for d in ("single", "sharded"))
    for key in ("images", "labels", "latents", "confidences"):
        assert torch.equal(single[key], sharded[key]), key  # each batch whole, same code and threads


@pytest.mark.slow
def test_two_ranks_give_the_same_images_as_one_process(target, generator, tmp_path):
    import torch.multiprocessing as mp

    cfg = small_cfg(classes_per_batch=2)
    run_attack(cfg, target, generator, tmp_path / "single")
    state_path = tmp_path / "state.pt"
    torch.save({"cfg": cfg, "target": target, "generator": generator}, state_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_worker, args=(2, port, str(state_path), str(tmp_path / "sharded")), nprocs=2)
    single, sharded = (load_checkpoint(tmp_path / d / "results.pt") for d in ("single", "sharded"))
    for key in ("images", "labels", "latents", "confidences", "initial_confidences"):
        assert torch.equal(single[key], sharded[key]), key  # whole batches, 1 thread on both sides (one_thread)
    assert read_json(tmp_path / "sharded" / "attack.json")["world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "sharded" / "partial").iterdir()) == [
        "batch_000.pt", "batch_001.pt", "batch_002.pt"]


def test_gmi_reaches_the_class_with_the_discriminator_prior(target, generator, tmp_path):
    disc = LinearDiscriminator(generator.mean.view(1, 1, 8, 8))
    cfg = small_cfg(attack="gmi", optim=dict(steps=25, lr=0.1, betas=(0.9, 0.999), loss="ce"),
                    gmi=dict(samples_per_class=3, latent="w", disc_weight=0.01))
    run_attack(cfg, target, generator, tmp_path, classes=[1, 3], discriminator=disc)
    res = load_checkpoint(tmp_path / "results.pt")
    assert res["images"].shape == (6, 1, 8, 8) and res["latents"].shape == (6, generator.w_dim)
    assert res["initial_confidences"].numel() == 0
    assert res["confidences"].mean() > 0.8
    with pytest.raises(ValueError, match="GMI needs the prior's discriminator"):
        run_attack(cfg, target, generator, tmp_path / "no_disc", classes=[1])


def test_miface_optimises_pixels_at_the_target_size(target, tmp_path):
    cfg = small_cfg(attack="miface", optim=dict(steps=40, lr=0.05, betas=(0.9, 0.999), loss="ce"),
                    miface=dict(samples_per_class=2, init="noise"))
    run_attack(cfg, target, None, tmp_path, classes=[0, 2])
    res = load_checkpoint(tmp_path / "results.pt")
    assert res["images"].shape == (4, 1, 8, 8) and res["latents"].numel() == 0
    assert 0 <= res["images"].min() and res["images"].max() <= 1
    assert res["confidences"].mean() > 0.8
    assert record_attack(tmp_path) == "miface"


def record_attack(run_dir):
    record = read_json(run_dir / "attack.json")
    assert record["prior"] is None
    return record["attack"]


def test_total_variation_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    assert total_variation(x).tolist() == pytest.approx([1.0])  # horizontal steps of 1, no vertical ones


# ----------------------------------------------------------------------------- bad input
def test_bad_class_lists_are_clear_errors(target, generator, tmp_path):
    cfg = small_cfg()
    with pytest.raises(ValueError, match=r"unknown class id 7: the target has 5 classes \(ids 0..4\)"):
        run_attack(cfg, target, generator, tmp_path, classes=[1, 7])
    with pytest.raises(ValueError, match="empty class list"):
        run_attack(cfg, target, generator, tmp_path, classes=[])
    with pytest.raises(ValueError, match="distinct"):
        run_attack(cfg, target, generator, tmp_path, classes=[1, 1])


def test_unmatchable_prior_is_a_clear_error(target, scenario, tmp_path):
    x, _ = scenario.tensors("public_test")
    two_channel = PCAGenerator(torch.cat([x, x], dim=1))
    with pytest.raises(ValueError, match="cannot show 2-channel images to a 1-channel target"):
        run_attack(small_cfg(), target, two_channel, tmp_path)
    with pytest.raises(ValueError, match="needs a generator prior"):
        run_attack(small_cfg(), target, None, tmp_path)


def test_bad_configs_name_the_value():
    with pytest.raises(Exception, match="initial.keep"):
        small_cfg(initial=dict(candidates=4, keep=6))
    with pytest.raises(Exception, match="final.keep"):
        small_cfg(final=dict(keep=7))
    with pytest.raises(Exception, match="betas"):
        small_cfg(optim=dict(betas=(0.9, 1.0)))
    with pytest.raises(ConfigError, match="unknown key 'optim.stepz'"):
        load_attack_config("attack-ppa", {"optim.stepz": 3})
    with pytest.raises(ConfigError, match="loss"):
        load_attack_config("attack-ppa", {"optim.loss": "l1"})


def test_dump_carries_the_results_version_and_target_sampling_only_when_on():
    from lsmia_ext.attacks.config import RESULTS_VERSION

    cfg = small_cfg()
    dump = cfg.model_dump(mode="json")
    assert dump["results_version"] == RESULTS_VERSION == 2 and "target_sampling" not in dump
    assert small_cfg(target_sampling=True).model_dump(mode="json")["target_sampling"] is True


@pytest.fixture(scope="module")
def mid_target(scenario):
    """A MID target (small_cnn + bottleneck) on the digits 0-4, its std raised so sampling visibly matters."""
    from lsmia_ext.defenses import MID
    from lsmia_ext.models import build_model

    torch.manual_seed(0)
    net = MID(beta=0.0, bottleneck_dim=16).wrap(build_model("small_cnn", 5, 1, 8))
    x, y = scenario.tensors("private_train")
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    net.train()
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        net.trunk[-1].encoder.bias[16:] += 5.0  # std = softplus(raw) instead of softplus(raw - 5)
    return net.eval()


def test_target_sampling_attacks_a_mid_target_with_seeded_noise(mid_target, generator, tmp_path):
    x = torch.rand(4, 1, 8, 8)
    mean_logits = mid_target(x)
    runs = {"mean": small_cfg(), "sampled": small_cfg(target_sampling=True),
            "again": small_cfg(target_sampling=True)}
    res = {}
    for name, cfg in runs.items():
        run_attack(cfg, mid_target, generator, tmp_path / name, classes=[0, 3])
        res[name] = load_checkpoint(tmp_path / name / "results.pt")
        record = read_json(tmp_path / name / "attack.json")["target_sampling"]
        assert record == {"on": name != "mean", "mid_bottlenecks": 1}
    for key in RESULT_KEYS:  # same code path, same seeds: the sampled attack repeats exactly
        assert torch.equal(res["sampled"][key], res["again"][key]), key
    assert not torch.equal(res["sampled"]["initial_confidences"], res["mean"]["initial_confidences"])
    assert torch.equal(mid_target(x), mean_logits)  # handed back deterministic


def test_shipped_attack_configs_load():
    names = [n for n in available_configs() if n.startswith("attack-")]
    assert {"attack-ppa", "attack-gmi", "attack-miface", "attack-ppa-facescrub"} <= set(names)
    cfgs = {n: load_attack_config(n) for n in names}
    assert cfgs["attack-ppa-facescrub"].initial.candidates == 2000 and cfgs["attack-ppa-facescrub"].final.keep == 50
    assert cfgs["attack-ppa"].optim.betas == (0.1, 0.1) and cfgs["attack-ppa"].optim.loss == "poincare"


# ----------------------------------------------------------------------------- command line
def test_cli_runs_gmi_from_run_directories(tmp_path):
    from lsmia_ext.models import build_model
    from lsmia_ext.models.registry import classifier_state
    from lsmia_ext.priors import Discriminator, StyleGenerator
    from lsmia_ext.priors.store import save_discriminator, save_generator
    from lsmia_ext.runio import save_checkpoint, write_text

    torch.manual_seed(0)
    target_dir, prior_dir = tmp_path / "target", tmp_path / "prior"
    save_checkpoint(target_dir / "model.pt", classifier_state(build_model("small_cnn", 5, 1, 8), "small_cnn"))
    write_text(target_dir / "config.yaml", "data:\n  name: digits\n  private_classes: [0, 1, 2, 3, 4]\n")
    save_generator(prior_dir / "generator.pt", StyleGenerator(8, 1, z_dim=8, w_dim=8, channels_max=8,
                                                              channels_min=4), step=0)
    save_discriminator(prior_dir / "discriminator.pt", Discriminator(8, 1, channels_max=8, channels_min=4))
    out = tmp_path / "attack"
    rc, stdout, stderr = lsmia("attack", "--config", "attack-gmi", "--target", target_dir, "--prior", prior_dir,
                               "--out", out, "--classes", "3", "1", "--set", "optim.steps=2", "--set", "device=cpu")
    assert rc == 0 and '"num_images": 10' in stdout, stderr
    record = read_json(out / "attack.json")
    assert record["classes"] == [3, 1] and record["prior"] == str(prior_dir)
    assert record["settings"]["data"]["name"] == "digits" and record["settings"]["optim"]["steps"] == 2
    assert load_checkpoint(out / "results.pt")["labels"].tolist() == [3] * 5 + [1] * 5
    rc, _, stderr = lsmia("attack", "--target", target_dir, "--out", tmp_path / "x")
    assert rc == 2 and "needs --prior" in stderr
    rc, _, stderr = lsmia("attack", "--target", target_dir, "--prior", prior_dir, "--out", tmp_path / "y",
                          "--classes", "9")
    assert rc == 2 and "unknown class id 9" in stderr
