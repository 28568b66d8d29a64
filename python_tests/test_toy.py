"""The 2D toy study: hand-written gradients against autograd, and `lsmia toy` end to end."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import lsmia
from lsmia_ext import toy

torch.set_num_threads(1)


@pytest.fixture()
def blobs():
    return toy.make_blobs(120, 1.6, 17)


def trained_a_little(x, y, alphas=(0.0, 0.1, -0.1), steps=30):
    """A stacked model after a few real training steps, so BN statistics and weights are non-trivial."""
    return toy.train_models(x, y, toy.ToySettings(alphas=alphas, train_steps=steps, train_lr=0.05))[0]


def test_blobs_match_the_paper_setup():
    x, y = toy.make_blobs(500, 1.6, 17)
    assert x.shape == (500, 2) and sorted(y.unique().tolist()) == [0, 1, 2]
    for c, centre in enumerate(toy.CENTRES):
        assert torch.allclose(x[y == c].mean(0), torch.tensor(centre), atol=0.4)
        assert x[y == c].std(0).mean().item() == pytest.approx(1.6, rel=0.15)


def test_manual_backward_matches_autograd(blobs):
    x, y = blobs
    alphas = (0.0, 0.1, -0.1)
    model = trained_a_little(x, y, alphas)
    model.train()
    xs = x.expand(3, -1, -1).contiguous()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ref = torch.autograd.grad(toy.smoothed_losses(model(xs), y, alphas).sum(), list(model.parameters()))
    model.load_state_dict(state)  # the forward above moved the running statistics
    with torch.no_grad():
        logits = model(xs)
    logits.requires_grad_(True)
    (dlogits,) = torch.autograd.grad(toy.smoothed_losses(logits, y, alphas).sum(), logits)
    model.backward_from_logits(dlogits)
    for (name, p), r in zip(model.named_parameters(), ref):
        assert torch.allclose(p.grad, r, atol=1e-5, rtol=1e-4), name


def test_copies_start_equal_and_train_apart(blobs):
    x, y = blobs
    fresh = toy.StackedMLP(3, 20, 3, seed=17)
    assert torch.equal(fresh.w1[0], fresh.w1[2])  # copies of one initialisation
    model = trained_a_little(x, y)
    assert not torch.allclose(model.w3[1], model.w3[2])  # alpha = 0.1 and -0.1 pull differently


def test_folded_network_equals_eval_forward_and_input_gradient_is_exact(blobs):
    x, y = blobs
    model = trained_a_little(x, y).eval()
    params = model.folded()
    pts = (torch.rand(3, 50, 2, generator=torch.Generator().manual_seed(0)) - 0.5) * 30
    with torch.no_grad():
        assert torch.allclose(toy.folded_logits(params, pts), model(pts), atol=1e-4)
    pts.requires_grad_(True)
    logits = model(pts)
    ce = F.cross_entropy(logits.reshape(-1, 3), torch.full((150,), 2), reduction="sum")
    (ref,) = torch.autograd.grad(ce, pts)
    grad, probs = toy.input_grad_ce(params, pts.detach(), 2)
    assert torch.allclose(grad, ref, atol=1e-5)
    assert torch.allclose(probs, logits.softmax(-1), atol=1e-5)


def test_attack_stops_each_path_on_its_own(blobs):
    x, y = blobs
    model = trained_a_little(x, y, steps=200).eval()
    s = toy.ToySettings(alphas=(0.0, 0.1, -0.1), max_attack_steps=400)
    res = toy.attack(model.folded(), s)
    assert res["paths"].shape[0] == 3 and res["paths"].shape[1] == int(res["steps"].max()) + 1
    assert torch.equal(res["paths"][:, 0], torch.tensor([s.start] * 3))  # the start is stored, not computed
    for i in range(3):
        n = int(res["steps"][i])
        assert bool(res["converged"][i]) == (res["confidence"][i] > s.stop_confidence)
        assert n == s.max_attack_steps or bool(res["converged"][i])
        assert torch.equal(res["paths"][i, n], res["final"][i])  # the path halts where the result is


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="alpha"):
        toy.ToySettings(alphas=(0.0, 1.5)).check()
    with pytest.raises(ValueError, match="target_class"):
        toy.ToySettings(target_class=3).check()
    with pytest.raises(ValueError, match="stop_confidence"):
        toy.ToySettings(stop_confidence=1.0).check()


def _run_cli(out, *extra):
    code, _, err = lsmia("toy", "--out", out, *extra)
    assert code == 0, err
    return json.loads((out / "toy.json").read_text())


def test_lsmia_toy_end_to_end_reduced(tmp_path):
    """The whole command on a shorter schedule (the full one is the slow test below)."""
    res = _run_cli(tmp_path, "--train-steps", "400", "--max-attack-steps", "600")
    assert (tmp_path / "toy.png").stat().st_size > 10_000
    assert [r["alpha"] for r in res["results"]] == [0.0, 0.05, -0.05]
    for r in res["results"]:
        assert r["train_acc"] == 1.0  # the blobs are separable
        assert 0 <= r["steps"] <= 600 and r["distance_to_class"] >= 0
        assert r["converged"] == (r["final_confidence"] > 0.95)


@pytest.mark.slow
def test_lsmia_toy_paper_schedule_direction(tmp_path):
    """The paper's schedule: positive LS ends the attack closest to the class's training points and
    negative LS farthest (PAPER.md section 6)."""
    res = {r["alpha"]: r for r in _run_cli(tmp_path)["results"]}
    assert res[0.05]["distance_to_class"] < res[0.0]["distance_to_class"] < res[-0.05]["distance_to_class"]
