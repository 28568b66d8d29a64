"""Generator priors: interface math, our networks, every adapter, bad specs/configs, and a real (tiny)
GAN training run on the 8x8 digits' public classes with FID, resume and reuse."""
from __future__ import annotations

import math
import sys
import textwrap

import pytest
import torch

from lsmia_ext.config import ConfigError, load_config
from lsmia_ext.priors import (Discriminator, Generator, PriorConfig, StyleGenerator, generator_from_spec,
                              load_discriminator, load_generator, public_images, resolution_schedule,
                              train_prior, truncate)

torch.set_num_threads(1)


def tiny_generator(image_size=28, channels=1, **kw) -> StyleGenerator:
    torch.manual_seed(0)
    args = dict(z_dim=8, w_dim=6, mapping_layers=2, channels_max=8, channels_min=4)
    args.update(kw)
    return StyleGenerator(image_size, channels, **args).eval()


# ---- our networks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size,expected", [(8, (4, 1)), (28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (56, (7, 3))])
def test_resolution_schedule(size, expected):
    assert resolution_schedule(size) == expected


@pytest.mark.parametrize("size", [4, 7, 30, 36, 27, True, 28.0])
def test_resolution_schedule_rejects(size):
    with pytest.raises(ValueError, match="image_size"):
        resolution_schedule(size)


@pytest.mark.parametrize("size,channels,convs", [(28, 1, 1), (32, 3, 2), (64, 3, 1)])
def test_style_generator_shapes_and_range(size, channels, convs):
    g = tiny_generator(size, channels, convs_per_level=convs)
    _, n_up = resolution_schedule(size)
    assert g.num_ws == 1 + convs * n_up and g.w_avg.shape == (g.w_dim,)
    ws = g.mapping(torch.randn(3, g.z_dim))
    assert ws.shape == (3, g.num_ws, g.w_dim)
    x = g.synthesis(ws)
    assert x.shape == (3, channels, size, size) and x.min() >= 0 and x.max() <= 1
    # one w (B, w_dim) is broadcast to all layers, as PPA optimises it
    torch.testing.assert_close(g.synthesis(ws[:, 0]), x, rtol=0, atol=synthesis_rounding_bound(g))


def synthesis_rounding_bound(g: StyleGenerator) -> float:
    """How far apart two float32 evaluations of synthesis on the same ws may land when their ops round
    differently, on the output's [0, 1] scale.

    The broadcast w (B, w_dim) and the full ws (B, num_ws, w_dim) give each style Linear its rows with
    another stride, so BLAS may sum them in another order (MKL does on AMD CPUs), and from there on every
    op sees slightly different inputs and rounds on its own. Each op's result is within n u of exact
    relative to its operands' magnitude (u = 2^-24, n its reduction length: 9 C_in + 1 for a 3x3 conv,
    w_dim + 1 for a style, 2 log2(HW) for instance norm's cascade-summed mean and variance, a few for
    the element-wise steps); instance norm keeps activations at unit scale and the output is 0.5 + 0.5 *
    a 1x1 conv, so each path is within u * sum(n) of exact (first order, no amplification by
    cancellation assumed) and the two within twice that. (Here the style sums reversed, emulating
    another BLAS order, moved outputs by <= 9e-7, 50x or more below this bound; a w fed to the wrong
    layer moves them by ~1e-2.)"""
    u = torch.finfo(torch.float32).eps / 2
    net = g.synthesis_net
    size, total = net.const.shape[-1], 0
    for layer in net.layers:
        size *= 2 if layer.upsample else 1
        total += 9 * layer.conv.in_channels + 1 + g.w_dim + 1 + 2 * math.ceil(math.log2(size * size)) + 4
    total += net.to_image.in_channels + 1 + 2
    return 2 * total * u


def test_attack_path_is_linear_where_the_displayed_image_saturates():
    """The attack differentiates synthesis(clamp=False): the generator's output layer is linear (as
    StyleGAN2's), so a pixel pushed past 0 or 1 still passes a gradient back to w; the clamped image (what
    is displayed and evaluated) stays in [0, 1]."""
    g = tiny_generator(8, 1, convs_per_level=1)
    with torch.no_grad():
        g.synthesis_net.to_image.bias.fill_(-3.0)  # a black image: the clamped output saturates at 0
    w = g.mapping(torch.randn(2, g.z_dim))[:, 0].requires_grad_(True)
    raw = g.synthesis(w, clamp=False)
    assert raw.max() < 0  # outside [0, 1]: no sigmoid, no clamp on this path
    # same ws layout and code on both sides, and clamp is exact: bit-equal by construction
    assert torch.equal(g.synthesis(w.detach()), raw.detach().clamp(0, 1))
    (grad,) = torch.autograd.grad(raw.sum(), w)
    assert grad.abs().sum() > 0
    (dead,) = torch.autograd.grad(g.synthesis(w).sum(), w)
    assert dead.abs().sum() == 0  # the clamped path would give the attack nothing here


def test_style_generator_rejects_bad_inputs():
    g = tiny_generator()
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        g.mapping(torch.randn(2, 7))
    with pytest.raises(ValueError, match="synthesis expects ws"):
        g.synthesis(torch.randn(2, g.num_ws + 1, g.w_dim))
    with pytest.raises(ValueError, match="channels_max"):
        StyleGenerator(28, 1, channels_max=0)


def test_truncation_math():
    g = tiny_generator()
    g.w_avg.copy_(torch.randn(g.w_dim))
    z = torch.randn(4, g.z_dim)
    w = g.mapping(z)
    for psi in (0.5, 0.0, 1.5, -0.3):
        expected = g.w_avg + psi * (w - g.w_avg)
        assert torch.allclose(g.mapping(z, truncation_psi=psi), expected, atol=1e-6)
    assert torch.allclose(g.mapping(z, 0.0), g.w_avg.expand_as(w))
    assert torch.equal(truncate(w, g.w_avg, 1.0), w)  # psi = 1 returns ws itself (no arithmetic)
    for bad in (float("nan"), math.inf, "0.5", True, None):
        with pytest.raises(ValueError, match="truncation_psi"):
            g.mapping(z, truncation_psi=bad)


def test_sample_is_seeded():
    g = tiny_generator()
    assert torch.equal(g.sample(5, seed=3), g.sample(5, seed=3))  # the same code on the same input twice
    assert not torch.equal(g.sample(5, seed=3), g.sample(5, seed=4))


def test_discriminator_gives_one_logit_per_image_and_rejects_wrong_shape():
    d = Discriminator(28, 1, channels_max=8, channels_min=4)
    assert d(torch.rand(6, 1, 28, 28)).shape == (6,)
    assert d(torch.rand(3, 1, 28, 28)).shape == (3,)  # odd batch: minibatch-std groups still divide it
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        d(torch.rand(2, 3, 28, 28))


# ---- adapters ------------------------------------------------------------------------------------------

@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's plain generator package on PYTHONPATH: z -> tanh images in [-1, 1], no mapping."""
    (tmp_path / "user_gan.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class TanhGenerator(nn.Module):
            def __init__(self, z_dim, size):
                super().__init__()
                self.size = size
                self.fc = nn.Linear(z_dim, size * size)

            def forward(self, z):
                return torch.tanh(3 * self.fc(z)).view(-1, 1, self.size, self.size)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("user_gan", None)


def test_module_adapter_without_mapping(user_module):
    import user_gan

    torch.manual_seed(1)
    net = user_gan.TanhGenerator(5, 12)
    torch.save(net.state_dict(), user_module / "net.pt")
    (user_module / "spec.yaml").write_text(
        "kind: module\nimport: user_gan:TanhGenerator\nkwargs: {z_dim: 5, size: 12}\nstate_dict: net.pt\n"
        "z_dim: 5\nw_dim: null\nimage_size: 12\nchannels: 1\nvalue_range: [-1, 1]\n")
    g = load_generator(user_module / "spec.yaml")  # relative state_dict path: next to the YAML
    assert isinstance(g, Generator) and (g.z_dim, g.w_dim, g.num_ws) == (5, 5, 1)
    assert torch.equal(g.w_avg, torch.zeros(5)) and not any(p.requires_grad for p in g.parameters())
    z = torch.randn(7, 5)
    ws = g.mapping(z)
    assert ws.shape == (7, 1, 5) and torch.equal(ws[:, 0], z)  # w = z
    x = g.synthesis(ws)
    assert x.shape == (7, 1, 12, 12) and x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x, (net(z) + 1) / 2, atol=1e-6)  # the loaded weights, rescaled to [0, 1]
    assert torch.allclose(g.mapping(z, 0.25)[:, 0], 0.25 * z)  # truncation toward w_avg = 0


def test_module_adapter_with_mapping_matches_the_wrapped_network(tmp_path):
    net = tiny_generator(16, 3)
    net.w_avg.copy_(torch.randn(net.w_dim))
    torch.save(net.state_dict(), tmp_path / "g.pt")
    spec = {"kind": "module", "import": "lsmia_ext.priors.networks:StyleGenerator",
            "kwargs": {**net.arch}, "state_dict": str(tmp_path / "g.pt"), "z_dim": 8, "w_dim": 6,
            "num_ws": net.num_ws, "image_size": 16, "channels": 3, "value_range": [0, 1]}
    g = load_generator(spec)
    assert torch.equal(g.w_avg, net.w_avg)  # the network's own w_avg buffer is used (a copy)
    z = torch.randn(4, 8)
    assert torch.allclose(g(z, 0.7), net(z, 0.7), atol=1e-6)


def test_module_adapter_estimates_w_avg_when_the_network_has_none(tmp_path, monkeypatch):
    (tmp_path / "mapped_gan.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Mapped(nn.Module):
            def __init__(self):
                super().__init__()
            def mapping(self, z):
                return z[:, :2] + 3.0
            def synthesis(self, ws):
                return ws.mean(dim=(1, 2)).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    g = generator_from_spec({"kind": "module", "import": "mapped_gan:Mapped", "z_dim": 4, "w_dim": 2,
                             "num_ws": 3, "image_size": 8, "channels": 1, "value_range": [2, 4]})
    assert torch.allclose(g.w_avg, torch.full((2,), 3.0), atol=0.03)  # mean of z + 3 over 10k draws
    x = g.synthesis(g.mapping(torch.zeros(2, 4)))
    assert x.shape == (2, 1, 8, 8) and torch.allclose(x, torch.full_like(x, 0.5))
    sys.modules.pop("mapped_gan", None)


def test_module_adapter_errors(user_module):
    base = {"kind": "module", "import": "user_gan:TanhGenerator", "kwargs": {"z_dim": 5, "size": 12},
            "z_dim": 5, "image_size": 12, "channels": 1, "value_range": [-1, 1]}
    with pytest.raises(ConfigError, match="package.module:ClassOrFactory"):
        generator_from_spec({**base, "import": "user_gan.TanhGenerator"})
    with pytest.raises(ImportError, match="no_such_module"):
        generator_from_spec({**base, "import": "no_such_module:G"})
    with pytest.raises(ImportError, match="has no attribute 'Nope'"):
        generator_from_spec({**base, "import": "user_gan:Nope"})
    with pytest.raises(ConfigError, match="lo < hi"):
        generator_from_spec({**base, "value_range": [1, -1]})
    with pytest.raises(TypeError, match="mapping"):
        generator_from_spec({**base, "w_dim": 5})
    g = generator_from_spec({**base, "image_size": 10})
    with pytest.raises(ValueError, match=r"\(B, 1, 10, 10\)"):
        g(torch.randn(2, 5))


def test_stylegan2_adapter_refuses_untrusted_pickle(tmp_path):
    pkl = tmp_path / "ffhq.pkl"
    pkl.write_bytes(b"not really a pickle")
    with pytest.raises(ConfigError, match="executes the code"):
        generator_from_spec({"kind": "stylegan2-ada", "pickle": str(pkl)})
    with pytest.raises(ConfigError, match="trust_pickle"):
        load_generator(pkl)  # a bare .pkl path is never unpickled


def test_stylegan2_adapter_says_when_nvlabs_code_is_missing(tmp_path):
    try:
        import dnnlib  # noqa: F401
        pytest.skip("NVlabs' dnnlib is importable here")
    except ImportError:
        pass
    pkl = tmp_path / "ffhq.pkl"
    pkl.write_bytes(b"not really a pickle")
    with pytest.raises(ImportError, match="stylegan2-ada-pytorch.*PYTHONPATH"):
        generator_from_spec({"kind": "stylegan2-ada", "pickle": str(pkl), "trust_pickle": True})


def test_bad_generator_specs(tmp_path):
    with pytest.raises(ConfigError, match="unknown generator kind 'biggan'.*lsmia, module, stylegan2-ada"):
        generator_from_spec({"kind": "biggan"})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        generator_from_spec({"kind": "lsmia", "path": "x", "colour": 1})
    with pytest.raises(FileNotFoundError, match="no generator.pt"):
        load_generator(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_discriminator(tmp_path)


# ---- configs and data separation -----------------------------------------------------------------------

def test_prior_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="unknown key 'train.stepz'"):
        load_config(PriorConfig, "prior-digits", {"train.stepz": 3})
    with pytest.raises(ConfigError, match="betas"):
        load_config(PriorConfig, "prior-digits", {"train.betas": [0.5, 1.0]})
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(PriorConfig, "prior-digits", {"train.batch_size": 1})
    with pytest.raises(ConfigError, match="overlap"):
        load_config(PriorConfig, "prior-digits", {"data.public_classes": [4, 5]})
    shipped = load_config(PriorConfig, "prior-fmnist").data  # public identity sub-classes of every category
    assert shipped.identities is not None and shipped.public_classes == []


def test_only_public_splits_reach_the_prior():
    from lsmia_ext.data import load_scenario

    sc = load_scenario(load_config(PriorConfig, "prior-digits").data)
    x, y = public_images(sc, "public_train")
    assert len(x) > 0 and int(y.max()) == sc.num_public_classes - 1
    for split in ("private_train", "private_test", "train"):
        with pytest.raises(ValueError, match="only see public data"):
            public_images(sc, split)


# ---- training end to end (real digits data) ------------------------------------------------------------

FAST = {"fid.num_samples": 200, "fid.extractor_epochs": 4, "train.sample_every": 20, "train.checkpoint_every": 20}


def test_training_lowers_fid_resumes_and_is_reused(tmp_path):
    straight = load_config(PriorConfig, "prior-digits", {**FAST, "train.steps": 40})
    metrics = train_prior(straight, tmp_path / "straight", progress=False)
    assert metrics["finished"] and metrics["steps"] == 40
    assert metrics["fid"] < 0.7 * metrics["fid_at_init"], metrics  # training moved samples toward real data
    assert metrics["history"][-1]["loss_d"] < metrics["history"][0]["loss_d"]  # the critic learned
    assert metrics["fid_public_train_vs_test"] < metrics["fid"]
    assert (tmp_path / "straight" / "samples" / "step_00040.png").stat().st_size > 0

    g = load_generator(tmp_path / "straight")
    x = g(torch.randn(16, g.z_dim), truncation_psi=0.5)
    assert x.shape == (16, 1, 8, 8) and torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    assert not any(p.requires_grad for p in g.parameters())
    assert g.w_avg.abs().sum() > 0  # tracked during training
    d = load_discriminator(tmp_path / "straight")
    images = x.clone().requires_grad_(True)
    d(images).sum().backward()  # GMI differentiates the realness logit w.r.t. the images
    assert images.grad is not None and d(x).shape == (16,)

    # a finished run is returned, not retrained
    stamp = (tmp_path / "straight" / "generator.pt").stat().st_mtime_ns
    assert train_prior(straight, tmp_path / "straight", progress=False)["fid"] == metrics["fid"]
    assert (tmp_path / "straight" / "generator.pt").stat().st_mtime_ns == stamp

    # interrupted after 20 steps, then continued: the same weights as the straight run
    train_prior(load_config(PriorConfig, "prior-digits", {**FAST, "train.steps": 20}), tmp_path / "split",
                progress=False)
    resumed = train_prior(straight, tmp_path / "split", progress=False)
    assert resumed["steps"] == 40
    a, b = load_generator(tmp_path / "straight").state_dict(), load_generator(tmp_path / "split").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)

    # the CLI entry point on the finished run: prints the metrics, retrains nothing
    from conftest import lsmia

    sets = [a for k, v in {**FAST, "train.steps": 40}.items() for a in ("--set", f"{k}={v}")]
    code, out, err = lsmia("train-prior", "--config", "prior-digits", "--out", tmp_path / "straight", *sets)
    assert code == 0 and '"fid": ' in out, err

    with pytest.raises(ValueError, match="more than train.steps=20"):
        train_prior(load_config(PriorConfig, "prior-digits", {**FAST, "train.steps": 20}), tmp_path / "split",
                    progress=False)
    with pytest.raises(ValueError, match="another config"):
        train_prior(load_config(PriorConfig, "prior-digits", {**FAST, "seed": 5}), tmp_path / "straight",
                    progress=False)


@pytest.mark.slow
def test_default_fmnist_prior_covers_every_category(tmp_path):
    """The shipped default (about 7 CPU-minutes) draws every Fashion-MNIST category from the public identity
    sub-classes; bounds leave room for seed and machine noise (measured values: README, prior section)."""
    metrics = train_prior(load_config(PriorConfig, "prior-fmnist"), tmp_path, progress=False)
    assert metrics["fid"] < 0.05 * metrics["fid_at_init"], metrics
    assert len(metrics["category_share_prior"]) == 10
    assert metrics["category_share_min_ratio"] > 0.1, metrics["category_share_prior"]  # no category missing
