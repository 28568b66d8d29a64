"""Defenses: MID's KL and bottleneck (initial sigma), BiDO's normalised HSIC (by hand, independence vs identity, width), short real
training runs per defense on digits (finite loss, accuracy above chance, deterministic eval forward,
checkpoint round trip), a 2-rank torchrun run with BiDO, and the Pareto front / trade-off plot."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

from conftest import digits_cfg, torchrun_train
from lsmia_ext.config import ConfigError
from lsmia_ext.defenses import (BiDO, MID, build_defense, centre, gaussian_kernel, gaussian_kl, linear_kernel, nhsic,
                                std_of)
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


# ---- real training ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [["defense.kind=mid", "defense.beta=0.01", "defense.bottleneck_dim=16"],
                                       ["defense.kind=bido", "defense.lambda_x=0.05", "defense.lambda_y=0.5"]])
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
def test_two_ranks_with_gloo_and_bido(tmp_path):
    proc = torchrun_train(tmp_path, "defense.kind=bido", "epochs=2")
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
