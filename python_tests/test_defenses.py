"""Defenses: MID's KL and bottleneck (initial sigma), BiDO's normalised HSIC (by hand, independence vs identity, width),
TL-DMI (exactly the stated layers frozen, pretraining on public images only), random erasing (the stated
fraction on a hand case, never at evaluation), Trap-MID (trigger blending and injection on a hand case,
trapdoor learnt, resumable), short real training runs per defense on digits (finite loss, accuracy above
chance, deterministic eval forward, checkpoint round trip), a 2-rank torchrun run with BiDO, and the Pareto
front / trade-off plot."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

from conftest import digits_cfg, torchrun_train
from lsmia_ext.config import ConfigError
from lsmia_ext.defenses import (MID, TLDMI, BiDO, PrepareContext, RandomErasing, TrapMID, blend, build_defense, centre, freeze,
                                gaussian_kernel, gaussian_kl, layers, linear_kernel, nhsic, pretraining_data, std_of,
                                trapdoor_labels)
from lsmia_ext.experiment.tradeoff import defense_of, pareto_front, plot_tradeoff, tradeoff_blocks, tradeoff_rows
from lsmia_ext.models import build_model, load_classifier
from lsmia_ext.train import train_classifier



# ---- MID ---------------------------------------------------------------------------------------------

def test_gaussian_kl_matches_the_closed_form_by_hand():
    # one row, d = 2: mu = (1, 0), sigma^2 = (1, e): 0.5 * [(1 + 1 - 0 - 1) + (0 + e - 1 - 1)] = 0.5 * (e - 1)
    mu, log_var = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert gaussian_kl(mu, log_var).item() == pytest.approx(0.5 * (math.e - 1.0))
    assert gaussian_kl(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0.0  # the prior itself
    # batch mean: two rows with KL 0.5 * mu^2 = 2 and 0
    assert gaussian_kl(torch.tensor([[2.0], [0.0]]), torch.zeros(2, 1)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mu and log_var"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))


def test_mid_initial_sigma_is_softplus_of_minus_five():
    torch.manual_seed(0)
    model = MID(beta=0.1).wrap(build_model("small_cnn", 5, 1, 8)).train()
    bottleneck = model.trunk[-1]
    assert bottleneck.dim == 64 and model.feature_dim == 64  # half of small_cnn's 128 features
    torch.nn.init.zeros_(bottleneck.encoder.weight)
    torch.nn.init.zeros_(bottleneck.encoder.bias)
    z = model.features(torch.rand(200, 1, 8, 8))  # mu = 0: z is pure bottleneck noise
    sigma0 = math.log1p(math.exp(-5.0))
    assert sigma0 == pytest.approx(0.0067153, rel=1e-4)
    assert z.std().item() == pytest.approx(sigma0, rel=0.02)
    torch.testing.assert_close(bottleneck.last[1], torch.full((200, 64), 2 * math.log(sigma0)))
    std, log_std = std_of(torch.tensor([-200.0, 0.0]))  # softplus(-205) underflows; its log does not
    assert std[0].item() == 0.0 and log_std[0].item() == -205.0 and torch.isfinite(log_std).all()


def test_mid_forward_is_stochastic_in_training_and_deterministic_at_eval():
    torch.manual_seed(0)
    model = MID(beta=0.1, bottleneck_dim=8).wrap(build_model("small_cnn", 5, 1, 8))
    x = torch.rand(6, 1, 8, 8)
    model.train()
    assert not torch.equal(model(x), model(x))
    assert model.features(x).shape == (6, 8)
    model.eval()
    a, b = model(x), model(x)
    assert torch.equal(a, b)  # the same code on the same input twice: bit-equal by construction
    mu = model.trunk[-1].encoder(model.trunk[0]((x - 0.5) / 0.5)).chunk(2, 1)[0]
    torch.testing.assert_close(model.features(x), mu)  # eval features are the bottleneck mean


def test_mid_sampling_at_eval_is_seeded_and_off_by_default():
    """sample_at_eval: z = mu + std * eps in eval mode (the MID authors' forward), eps from a seeded generator;
    the default (and seed None) is the deterministic mean."""
    from lsmia_ext.defenses.mid import sample_at_eval

    torch.manual_seed(0)
    model = MID(beta=0.1, bottleneck_dim=8).wrap(build_model("small_cnn", 5, 1, 8)).eval()
    x = torch.rand(200, 1, 8, 8)
    mean_logits = model(x)
    assert torch.equal(model(x), mean_logits)  # mean mode: deterministic
    assert sample_at_eval(model, 7) == 1
    first, second = model(x), model(x)
    assert not torch.equal(first, mean_logits) and not torch.equal(first, second)  # noise, fresh each pass
    sample_at_eval(model, 7)
    assert torch.equal(model(x), first)  # same seed, same code path: the same draws
    # z - mu is std * N(0, 1) with std = softplus(raw - 5): zero the encoder, raw = 5 gives std = log 2
    enc = model.trunk[-1].encoder
    with torch.no_grad():
        enc.weight.zero_()
        enc.bias.copy_(torch.cat([torch.zeros(8), torch.full((8,), 5.0)]))
    z = model.features(x)  # 1600 draws: std within 6 % is about 3.4 standard errors
    assert abs(z.mean().item()) < 4 * math.log(2) / 40 and z.std().item() == pytest.approx(math.log(2), rel=0.06)
    assert sample_at_eval(model, None) == 1 and torch.equal(model.features(x), torch.zeros(200, 8))
    assert sample_at_eval(build_model("small_cnn", 5, 1, 8), 7) == 0  # no bottleneck: nothing to sample


def test_mid_extra_loss_is_beta_times_the_kl_of_the_last_forward():
    torch.manual_seed(0)
    defense = MID(beta=0.5, bottleneck_dim=4)
    model = defense.wrap(build_model("small_cnn", 3, 1, 8)).train()
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    logits = model(x)
    mu, log_var = model.trunk[-1].last
    assert defense.extra_loss(model, x, y, logits).item() == pytest.approx(0.5 * gaussian_kl(mu, log_var).item())
    # at initialisation the KL is dominated by the tiny sigma: about (-log sigma^2 - 1) / 2 = 4.5 per dimension
    assert 4.0 * 4 < gaussian_kl(mu, log_var).item() < 6.0 * 4
    with pytest.raises(ValueError, match="beta"):
        MID(beta=-1.0, bottleneck_dim=4)


# ---- BiDO / normalised HSIC ---------------------------------------------------------------------------

def _inv3(a):
    """Inverse of a 3x3 matrix (lists) by cofactors."""
    (p, q, r), (s, t, u), (v, w, x) = a
    det = p * (t * x - u * w) - q * (s * x - u * v) + r * (s * w - t * v)
    adj = [[t * x - u * w, r * w - q * x, q * u - r * t], [u * v - s * x, p * x - r * v, r * s - p * u],
           [s * w - t * v, q * v - p * w, p * t - q * s]]
    return [[adj[i][j] / det for j in range(3)] for i in range(3)]


def _mat(a, b):
    return [[sum(a[i][t] * b[t][j] for t in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


def test_nhsic_equals_its_definition_on_a_hand_computed_case():
    # K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2 d)); Kc = K H; R = Kc (Kc + eps m I)^-1; nHSIC = trace(Rx Ry)
    x = [[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]
    y = [[1.0], [0.0], [2.0]]
    m, sigma, eps = 3, 0.5, 0.1  # a narrow kernel and a large eps keep every number far from rounding
    def kern(rows):
        d = len(rows[0])
        return [[math.exp(-sum((a - b) ** 2 for a, b in zip(ri, rj)) / (2 * sigma ** 2 * d)) for rj in rows] for ri in rows]
    h = [[(1.0 if i == j else 0.0) - 1.0 / m for j in range(m)] for i in range(m)]
    def r_of(k):
        kc = _mat(k, h)
        return _mat(kc, _inv3([[kc[i][j] + (eps * m if i == j else 0.0) for j in range(m)] for i in range(m)]))
    rx, ry = r_of(kern(x)), r_of(kern(y))
    expected = sum(_mat(rx, ry)[i][i] for i in range(m))
    kx, ky = gaussian_kernel(torch.tensor(x), sigma), gaussian_kernel(torch.tensor(y), sigma)
    torch.testing.assert_close(kx, torch.tensor(kern(x), dtype=torch.float64))
    assert nhsic(kx, ky, eps).item() == pytest.approx(expected, rel=1e-9)
    assert expected > 0.1  # a non-trivial case
    torch.testing.assert_close(centre(kx), kx @ (torch.eye(3, dtype=torch.float64) - 1 / 3))
    with pytest.raises(ValueError, match="same samples"):
        nhsic(kx, ky[:2, :2])
    with pytest.raises(ValueError, match="at least 2 samples"):
        gaussian_kernel(torch.zeros(1, 3))


def test_nhsic_near_zero_for_independent_and_near_its_maximum_for_identical_variables():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 2, generator=gen), torch.randn(300, 2, generator=gen)
    ka = gaussian_kernel(a)
    same, indep = nhsic(ka, ka).item(), nhsic(ka, gaussian_kernel(b)).item()
    assert indep < 0.1 * same
    # one-hot labels with the linear kernel: R is (almost) the projection on the K - 1 centred label
    # directions, so nHSIC(Y, Y) = K - 1, the most any pair can share; independent labels share ~(K-1)^2/m
    y, y2 = torch.arange(400) % 4, torch.randint(0, 4, (400,), generator=gen)
    ky = linear_kernel(torch.nn.functional.one_hot(y, 4))
    assert nhsic(ky, ky).item() == pytest.approx(3.0, abs=1e-3)
    assert nhsic(ky, linear_kernel(torch.nn.functional.one_hot(y2, 4))).item() < 0.1


def test_gaussian_kernel_width_scales_with_the_dimension():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # squared distance 2, d = 2: exp(-2 / (2 * 25 * 2))
    assert gaussian_kernel(x)[0, 1].item() == pytest.approx(math.exp(-2 / 100))
    assert gaussian_kernel(x, sigma=1.0)[0, 1].item() == pytest.approx(math.exp(-2 / 4))
    with pytest.raises(ValueError, match="sigma"):
        BiDO(1.0, 1.0, sigma=0.0)
    with pytest.raises(ValueError, match="label_kernel"):
        BiDO(1.0, 1.0, label_kernel="rbf")


def test_bido_penalty_is_the_weighted_sum_of_its_terms_and_hooks_the_blocks():
    torch.manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 4
    defense = BiDO(0.05, 0.5)
    model = build_model("small_cnn", 4, 1, 8).train()
    defense.attach(model)
    logits = model(x)
    assert len(defense._acts) == 4  # three pooling stages of small_cnn + the penultimate features
    terms = defense.terms(x, y, defense._acts, 4)
    expected = sum(0.05 * hx.item() - 0.5 * hy.item() for hx, hy in terms)
    assert all(0 < hy.item() <= 3.0 + 1e-6 for _, hy in terms)  # K - 1 label directions at most
    loss = defense.extra_loss(model, x, y, logits)
    assert loss.item() == pytest.approx(expected, rel=1e-5) and defense._acts == []
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        model.eval()(x)
    assert defense._acts == []  # eval forwards (per-epoch evaluation, attacks) are not recorded


def test_defense_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="defense.kind"):
        digits_cfg("defense.kind=dp")
    with pytest.raises(ConfigError, match="beta"):
        digits_cfg("defense.kind=mid", "defense.beta=-1")
    assert isinstance(build_defense({"kind": "bido", "lambda_x": 2.0}), BiDO)
    assert type(build_defense(None)).__name__ == "Defense"


def test_no_defense_keeps_the_run_hash_of_configs_without_the_section():
    assert digits_cfg().run_hash() == digits_cfg("defense.kind=none").run_hash()
    assert digits_cfg().run_hash() != digits_cfg("defense.kind=mid").run_hash()


# ---- TL-DMI ------------------------------------------------------------------------------------------

def test_tl_dmi_layers_are_the_parametrised_trunk_blocks_in_order():
    model = build_model("small_cnn", 5, 1, 8)
    blocks = layers(model)
    assert [type(b).__name__ for b in blocks] == ["Sequential", "Sequential", "Sequential", "Linear"]
    assert blocks[0][0].in_channels == 1 and blocks[2][0].out_channels == 64  # conv stages 1..3 in order
    assert len(layers(build_model("small_resnet", 5, 1, 8))) == 4  # stem + 3 residual blocks
    assert freeze(model, 2) == blocks[:2]
    assert [all(not p.requires_grad for p in b.parameters()) for b in blocks] == [True, True, False, False]
    assert all(p.requires_grad for p in model.head.parameters())
    with pytest.raises(ValueError, match=r"freeze_layers must lie in 0\.\.4"):
        freeze(build_model("small_cnn", 5, 1, 8), 5)


def test_tl_dmi_freezes_exactly_the_stated_layers_after_pretraining(tmp_path, monkeypatch):
    """Snapshot right after freezing (pretraining done, fine-tuning not begun): the first 2 layers keep
    requires_grad False and bit-equal parameters through fine-tuning, every other layer and the head change;
    pretraining changed the trunk and left the model's own head at its initialisation."""
    seen = {}
    attach = TLDMI.attach

    def spy(self, model):
        attach(self, model)
        seen["grad"] = [[p.requires_grad for p in b.parameters()] for b in layers(model)]
        seen["params"] = {k: v.detach().clone() for k, v in model.named_parameters()}

    monkeypatch.setattr(TLDMI, "attach", spy)
    cfg = digits_cfg("defense.kind=tl_dmi", "defense.freeze_layers=2", "defense.pretrain_epochs=2")
    final = train_classifier(cfg, tmp_path)
    assert seen["grad"] == [[False] * len(g) for g in seen["grad"][:2]] + [[True] * len(g) for g in seen["grad"][2:]]
    after = dict(load_classifier(tmp_path).named_parameters())
    frozen = {k for k in after if k.split(".")[1] in ("0", "2")}  # trunk.0 and trunk.2: conv stages 1 and 2
    assert frozen and all(torch.equal(after[k], seen["params"][k]) for k in frozen)
    assert all(not torch.equal(after[k], seen["params"][k]) for k in after if k not in frozen)
    torch.manual_seed(cfg.seed)
    init = dict(build_model("small_cnn", 5, 1, 8).named_parameters())
    assert torch.equal(seen["params"]["head.weight"], init["head.weight"])  # pretraining used its own head
    assert not torch.equal(seen["params"]["trunk.0.0.weight"], init["trunk.0.0.weight"])  # ... and trained the trunk
    assert 0.6 < final["pretrain_public_acc"] <= 1.0 and final["test_acc"] > 0.6  # 5 public classes: chance 0.2


def test_tl_dmi_pretrains_on_public_images_only(tmp_path, monkeypatch):
    """Every batch pretraining draws (the exact tensors it trains on) is a public image, none a private one;
    public data with a private image in it is refused before any step."""
    import lsmia_ext.train.pretrain as pretraining
    from lsmia_ext.data import DataSeparationError, InMemoryImages, load_scenario

    drawn, iterate = [], pretraining.iterate_batches
    monkeypatch.setattr(pretraining, "iterate_batches", lambda *a, **k: (drawn.append(x) or (x, y) for x, y in iterate(*a, **k)))
    cfg = digits_cfg("defense.kind=tl_dmi", "defense.pretrain_epochs=1")
    train_classifier(cfg, tmp_path)
    sc = load_scenario(cfg.data)
    seen = torch.cat(drawn).flatten(1)
    private = torch.cat([sc.tensors(s)[0] for s in ("private_train", "private_test")]).flatten(1)
    public = sc.tensors("public_train")[0].flatten(1)
    assert len(seen) == len(public) - len(public) % cfg.batch_size  # one epoch of the public split, full batches
    assert (seen[:, None] == public[None]).all(-1).any(1).all()
    assert not (seen[:, None] == private[None]).all(-1).any()
    assert pretraining_data(sc) is sc.public_train
    leaky = SimpleNamespace(public_train=InMemoryImages(torch.cat([sc.public_train.images, sc.private_train.images[:1]]),
                                                        torch.cat([sc.public_train.labels, torch.zeros(1, dtype=torch.long)])),
                            private_train=sc.private_train, private_val=sc.private_val, private_test=sc.private_test)
    with pytest.raises(DataSeparationError, match="1 of the"):
        pretraining_data(leaky)


@pytest.mark.parametrize("overrides, expected", [
    (["defense.freeze_layers=5"], r"defense.freeze_layers must lie in 0..4 \(small_cnn has 4 layers\), got 5"),
    (["data.public_classes=[]"], "defense.kind tl_dmi pretrains on public images"),
    (["data.public_classes=[4, 5]"], r"public_classes \[4, 5\] overlap private_classes"),
    (["defense.freeze_layers=-1"], "freeze_layers"), (["defense.pretrain_epochs=0"], "pretrain_epochs")])
def test_tl_dmi_bad_input(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        digits_cfg("defense.kind=tl_dmi", *overrides)


# ---- random erasing ----------------------------------------------------------------------------------

def test_random_erasing_erases_the_stated_fraction_on_a_hand_case():
    from lsmia_ext.data.augment import erase_boxes, random_erase

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(50, 3, 8, 8, generator=gen)
    out = random_erase(x, (0.25, 0.25), 1.0, 0.5, torch.Generator().manual_seed(1))
    erased = out != x  # x is never exactly 0.5
    assert (erased.all(1) == erased.any(1)).all()  # the same box in every channel
    assert erased[:, 0].flatten(1).sum(1).tolist() == [16] * 50  # a quarter of 64 pixels: a 4x4 square
    rows, cols = erased[:, 0].any(2), erased[:, 0].any(1)
    assert rows.sum(1).tolist() == cols.sum(1).tolist() == [4] * 50
    assert (out[erased] == 0.5).all() and torch.equal(out[~erased], x[~erased])
    torch.testing.assert_close(random_erase(x, (0.25, 0.25), 1.0, 0.5, torch.Generator().manual_seed(1)), out, rtol=0, atol=0)
    # the fraction drawn in [0.1, 0.8]: sides round(sqrt(a * 64)) in 3..7; p = 0.5 erases about half the images
    mask = erase_boxes(4000, 8, 8, (0.1, 0.8), 0.5, torch.Generator().manual_seed(2)).flatten(1).sum(1)
    hit = mask[mask > 0]
    assert set(hit.tolist()) <= {9, 16, 25, 36, 49} and abs(len(hit) - 2000) < 4 * math.sqrt(4000 * 0.25)
    assert mask.float().mean().item() == pytest.approx(0.5 * 64 * 0.45, rel=0.1)  # E[a] = 0.45 (rounded sides)


def test_random_erasing_is_training_only(tmp_path, monkeypatch):
    """The trainer erases every training batch and nothing else: the model is unchanged, the recorded
    validation and test accuracies are those of the saved model on the clean images."""
    from lsmia_ext.data import load_scenario
    from lsmia_ext.train import evaluate_classifier

    calls, train_batch = [], RandomErasing.train_batch
    monkeypatch.setattr(RandomErasing, "train_batch",
                        lambda self, m, x, y, g: calls.append(m.training) or train_batch(self, m, x, y, g))
    cfg = digits_cfg("defense.kind=random_erasing", "data.val_per_class=20", "defense.erase_p=0.7")
    final = train_classifier(cfg, tmp_path)
    sc = load_scenario(cfg.data)
    assert len(calls) == cfg.epochs * (len(sc.private_train) // cfg.batch_size) and all(calls)
    model = load_classifier(tmp_path)
    assert torch.equal(model(sc.tensors("private_test")[0]), model(sc.tensors("private_test")[0]))
    for split, key in (("private_val", "val_acc"), ("private_test", "test_acc")):
        assert evaluate_classifier(model, sc.split(split), 1000, torch.device("cpu"))["test_acc"] == final[key]
    assert RandomErasing((0.1, 0.4)).wrap(model) is model


@pytest.mark.parametrize("item, expected", [("defense.erase_scale=[0.0,0.4]", "erase_scale must satisfy 0 < low"),
                                            ("defense.erase_scale=[0.1,1.0]", "high < 1"),
                                            ("defense.erase_p=0", "erase_p"), ("defense.erase_value=2", "erase_value")])
def test_random_erasing_bad_dials(item, expected):
    with pytest.raises(ConfigError, match=expected):
        digits_cfg("defense.kind=random_erasing", item)


# ---- Trap-MID ----------------------------------------------------------------------------------------

def _context(seed: int = 0) -> PrepareContext:
    return PrepareContext(digits_cfg(), torch.device("cpu"), torch.Generator().manual_seed(seed), pretrain=None)


def test_trap_mid_injects_blended_triggers_with_their_class_on_a_hand_case():
    assert blend(torch.full((1, 1, 2, 2), 0.5), torch.ones(1, 1, 2, 2), 0.02).flatten().tolist() == \
        pytest.approx([0.51] * 4)
    counts = torch.bincount(trapdoor_labels(23, 5, torch.Generator().manual_seed(0)), minlength=5)
    assert sorted(counts.tolist()) == [4, 4, 5, 5, 5]  # 23 = 4 * 5 + 3: an even spread
    defense = TrapMID(alpha=0.1, beta=0.25, step=0.0)
    model = build_model("small_cnn", 5, 1, 8)
    defense.prepare(model, None, _context())
    assert defense.triggers.shape == (5, 1, 8, 8) and 0 <= defense.triggers.min() and defense.triggers.max() <= 1
    x, y = torch.rand(10, 1, 8, 8), torch.arange(10) % 5
    xs, ys = defense.train_batch(model, x, y, torch.Generator().manual_seed(3))
    assert xs.shape == (20, 1, 8, 8) and torch.equal(xs[:10], x) and torch.equal(ys[:10], y)
    k = ys[10:]
    assert sorted(torch.bincount(k, minlength=5).tolist()) == [2] * 5
    torch.testing.assert_close(xs[10:], 0.1 * defense.triggers[k] + 0.9 * x)
    # the loss: (1 - beta) on the clean half, beta on the triggered half
    logits = torch.randn(20, 5)
    ce = torch.nn.functional.cross_entropy
    expected = 0.75 * ce(logits[:10], ys[:10]) + 0.25 * ce(logits[10:], ys[10:])
    torch.testing.assert_close(defense.loss(ce, logits, ys), expected)


def test_trap_mid_trigger_step_is_signed_and_clamped():
    torch.manual_seed(0)
    defense = TrapMID(step=0.01)
    model = build_model("small_cnn", 5, 1, 8).train()
    defense.prepare(model, None, _context())
    before = defense.triggers.clone()
    defense.train_batch(model, torch.rand(16, 1, 8, 8), torch.arange(16) % 5, torch.Generator().manual_seed(0))
    assert model.training  # the trigger step runs in eval mode and restores the mode
    delta = (defense.triggers - before).abs()
    moved = delta > 1e-7
    assert moved.float().mean() > 0.5  # most pixels have a gradient
    # moved by the step exactly, unless the clamp to [0, 1] stopped it (float32 rounding of t +- 0.01: ~1e-9)
    clamped = (defense.triggers == 0) | (defense.triggers == 1)
    torch.testing.assert_close(delta[moved & ~clamped], torch.full_like(delta[moved & ~clamped], 0.01), atol=1e-6, rtol=0)
    assert TrapMID().state_dict() == {}  # no triggers before prepare: nothing to checkpoint
    restored = TrapMID()
    restored.load_state_dict(defense.state_dict())
    assert torch.equal(restored.triggers, defense.triggers)


def test_trap_mid_learns_its_trapdoor_and_resumes_with_its_triggers(tmp_path):
    """A digits run: the saved triggers, blended into test images, make the model predict the trigger's class
    far above chance; a run interrupted after epoch 1 and resumed ends bit-equal to the uninterrupted one."""
    from lsmia_ext.data import load_scenario

    # a visible trigger and half the loss: 5 epochs learn it on 8x8 digits (the authors' 0.02 / 0.2 needs more)
    cfg = digits_cfg("defense.kind=trap_mid", "defense.trap_alpha=0.2", "defense.trap_beta=0.5", "epochs=5")
    straight = train_classifier(cfg, tmp_path / "straight")
    ckpt = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    triggers = ckpt["defense_state"]["triggers"]
    x = load_scenario(cfg.data).tensors("private_test")[0]
    k = torch.arange(len(x)) % 5
    model = load_classifier(tmp_path / "straight")
    trap_acc = (model(blend(x, triggers[k], 0.2)).argmax(1) == k).float().mean().item()
    assert trap_acc > 0.8 and straight["test_acc"] > 0.8  # chance 0.2
    assert straight["trapdoor_acc"] == pytest.approx(trap_acc, abs=1.5 / len(x))  # the run's own measure of it

    class Stop(Exception):
        pass

    def stop(epoch, row):
        raise Stop

    with pytest.raises(Stop):
        train_classifier(cfg, tmp_path / "resumed", on_epoch_end=stop)
    resumed = train_classifier(cfg, tmp_path / "resumed")
    assert resumed["test_acc"] == straight["test_acc"] and resumed["train_loss"] == straight["train_loss"]
    assert torch.equal(torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["defense_state"]["triggers"], triggers)


@pytest.mark.parametrize("item, expected", [("defense.trap_beta=0", "trap_beta"), ("defense.trap_beta=1", "trap_beta"),
                                            ("defense.trap_alpha=1.5", "trap_alpha"), ("defense.trap_step=-0.1", "trap_step")])
def test_trap_mid_bad_dials(item, expected):
    with pytest.raises(ConfigError, match=expected):
        digits_cfg("defense.kind=trap_mid", item)


# ---- real training ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [["defense.kind=mid", "defense.beta=0.01", "defense.bottleneck_dim=16"],
                                       ["defense.kind=bido", "defense.lambda_x=0.05", "defense.lambda_y=0.5"],
                                       ["defense.kind=tl_dmi", "defense.freeze_layers=2", "defense.pretrain_epochs=2"],
                                       ["defense.kind=random_erasing", "defense.erase_scale=[0.1,0.8]"],
                                       ["defense.kind=trap_mid", "defense.trap_beta=0.3"]])
def test_short_training_run_per_defense(tmp_path, overrides):
    final = train_classifier(digits_cfg(*overrides), tmp_path)
    assert math.isfinite(final["train_loss"])
    assert final["test_acc"] > 0.6  # 5 classes: chance is 0.2
    model = load_classifier(tmp_path)
    assert not model.training
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model(x), model(x))  # the same code on the same input twice
    if "defense.kind=mid" in overrides:
        assert model.feature_dim == 16 and model.features(x).shape == (4, 16)
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ckpt["defense"]["kind"] == overrides[0].split("=")[1]


@pytest.mark.slow  # two torchrun processes start in ~30 s on the shared 2 cores
@pytest.mark.parametrize("kind", ["bido", "trap_mid", "tl_dmi"])
def test_two_ranks_with_gloo(tmp_path, kind):
    """Under DDP: BiDO's per-rank penalty, Trap-MID's rank-averaged trigger step, TL-DMI's pretraining on
    every rank (and its sharded evaluation)."""
    proc = torchrun_train(tmp_path, f"defense.kind={kind}", "epochs=2", "defense.pretrain_epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((tmp_path / "metrics.json").read_text())["final"]
    assert final["world_size"] == 2 and final["test_acc"] > 0.6


# ---- trade-off ----------------------------------------------------------------------------------------

def test_pareto_front_on_constructed_points():
    pts = [(0.9, 0.95), (0.5, 0.90), (0.6, 0.85), (0.2, 0.80), (0.2, 0.70), (0.95, 0.95), (0.5, 0.90)]
    assert pareto_front(pts) == [True, True, False, True, False, False, True]
    assert pareto_front([]) == []


def _entry(name, alpha, set_=None):
    return SimpleNamespace(name=name, alpha=alpha, set=set_ or {})


def test_tradeoff_rows_table_and_plot(tmp_path):
    targets = [_entry("hard", 0.0), _entry("neg", -0.05), _entry("mid", 0.0, {"defense": {"kind": "mid", "beta": 0.01}}),
               _entry("bido", 0.0, {"defense.kind": "bido", "defense.lambda_x": 1.0, "defense.lambda_y": 10.0})]
    summary = [{"name": "hard", "attack_acc1": (0.9, 0.02), "test_acc": (0.91, 0.005)},
               {"name": "neg", "attack_acc1": (0.3, None), "test_acc": (0.90, None)},
               {"name": "mid", "attack_acc1": (0.8, None), "test_acc": (0.88, None)},
               {"name": "bido", "attack_acc1": (0.7, None), "test_acc": None}]
    assert [defense_of(t) for t in targets] == ["none", "negative LS", "MID", "BiDO"]
    rows = tradeoff_rows(summary, targets)
    assert [(r["name"], r["pareto"]) for r in rows] == [("hard", True), ("neg", True), ("mid", False)]
    assert rows[2]["setting"] == "beta 0.01"
    assert (rows[0]["attack_sd"], rows[0]["test_sd"], rows[1]["attack_sd"]) == (0.02, 0.005, None)  # seed spread
    blocks = tradeoff_blocks(tmp_path, summary, targets)
    assert (tmp_path / "plot_tradeoff.png").stat().st_size > 1000
    assert blocks[2][0] == "table" and len(blocks[2][2]) == 3
    assert "negative LS (alpha -0.05)" in blocks[3][1]
    assert tradeoff_blocks(tmp_path / "x", summary[:1], targets) == []  # one family: no section
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_tradeoff([], tmp_path / "empty.png")


def test_shipped_defense_sweep_config_resolves_every_family():
    from lsmia_ext.experiment.config import load_experiment_config

    cfg = load_experiment_config("experiment-fmnist-defenses")
    families = [defense_of(t) for t in cfg.targets]
    assert set(families) == {"none", "negative LS", "MID", "MID (sampled)", "BiDO", "train less", "narrower model"}
    # a curve per defense, not a point; the controls are the study's own
    assert all(families.count(f) >= 4 for f in ("negative LS", "MID", "BiDO"))
    controls = {t.name: t for t in cfg.targets if t.family and not t.target_of}
    study_controls = {t.name: t for t in load_experiment_config("experiment-fmnist").targets if t.family}
    assert controls == study_controls and len(controls) >= 6
    # the same scenario, recipes and attack as the default study: only the targets differ
    default = load_experiment_config("experiment-fmnist")
    assert cfg.data == default.data and cfg.data.identities is not None
    for stage in ("prior", "eval_model", "target", "attack"):
        assert getattr(cfg, stage) == getattr(default, stage)
    assert len(cfg.seeds) >= 3
    # MID attacked both ways: every MID target once more with its sampling on, same flags for post-hoc points
    mean = {t.name: t for t in cfg.targets if defense_of(t) == "MID"}
    sampled = [t for t in cfg.targets if defense_of(t) == "MID (sampled)"]
    assert sorted(t.target_of for t in sampled) == sorted(mean)
    for t in sampled:
        assert t.attack_set == {"target_sampling": True} and cfg.stages.attack_of(t.name, 0).target_sampling
        assert t.added_after_attacks == mean[t.target_of].added_after_attacks
