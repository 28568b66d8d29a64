"""fused_ls_ce as a drop-in for F.cross_entropy: (K,), (N, K), (N, K, d1, ...) logits, class weights,
second derivatives, and the opt-in in-place gradient."""
import pytest
import torch
import torch.nn.functional as F

from lsmia_ext import LabelSmoothingCrossEntropy, fused_ls_ce
from lsmia_ext.ops.reference import ls_ce_reference

from kernel_utils import DEVICES


def make(shape, dtype=torch.float32, device="cpu", seed=0, weighted=False):
    g = torch.Generator().manual_seed(seed)
    k = shape[0] if len(shape) == 1 else shape[1]
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    t_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    t = torch.randint(0, k, t_shape, generator=g)
    if t.numel() > 2:
        t.view(-1)[1] = -100
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.25 if weighted else None
    cast = dict(device=device, dtype=dtype)
    return x.to(**cast), t.to(device), (None if w is None else w.to(**cast))


def loss_and_grad(fn, x, t, alpha, reduction, w):
    xg = x.detach().clone().requires_grad_()
    out = fn(xg, t, alpha, weight=w, reduction=reduction)
    up = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    (out * up).sum().backward()
    return out.detach(), xg.grad


SHAPES = [(7,), (5, 7), (3, 7, 4), (2, 7, 3, 5), (2, 100, 6), (40, 3, 9)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_torch_for_every_shape_and_weight(device, shape, weighted, reduction):
    x, t, w = make(shape, device=device, seed=len(shape), weighted=weighted)
    for alpha in (0.0, 0.1, 1.0):
        ours = loss_and_grad(fused_ls_ce, x, t, alpha, reduction, w)
        theirs = loss_and_grad(lambda z, y, a, **kw: F.cross_entropy(z, y, label_smoothing=a, **kw), x, t, alpha,
                               reduction, w)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5)
    ours = loss_and_grad(fused_ls_ce, x, t, -0.2, reduction, w)
    ref = loss_and_grad(lambda z, y, a, **kw: ls_ce_reference(z.double(), y, a, **kw), x, t, -0.2, reduction, w)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.double(), b.double(), rtol=2e-5, atol=2e-5)


def test_channels_last_maps_are_read_without_a_copy_and_match_torch():
    x, t, w = make((4, 5, 6, 7), weighted=True)
    x = x.contiguous(memory_format=torch.channels_last)
    ours = loss_and_grad(fused_ls_ce, x, t, 0.1, "mean", w)
    theirs = loss_and_grad(lambda z, y, a, **kw: F.cross_entropy(z, y, label_smoothing=a, **kw), x, t, 0.1, "mean", w)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5)


def test_module_takes_weight_like_cross_entropy_loss():
    x, t, w = make((9, 4), weighted=True)
    crit = LabelSmoothingCrossEntropy(0.2, weight=w)
    torch.testing.assert_close(crit(x, t), F.cross_entropy(x, t, weight=w, label_smoothing=0.2))
    assert "weight" in dict(crit.named_buffers())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (2, 70), (2, 4, 3)], ids=str)
def test_gradgradcheck_float64(weighted, shape):
    x, t, w = make(shape, torch.float64, seed=2, weighted=weighted)
    for alpha in (-0.3, 0.0, 0.2):
        for reduction in ("mean", "none"):
            xg = x.clone().requires_grad_()
            assert torch.autograd.gradgradcheck(lambda z: fused_ls_ce(z, t, alpha, weight=w, reduction=reduction),
                                                (xg,))


def test_hessian_vector_product_matches_reference():
    x, t, w = make((8, 12), torch.float64, seed=3, weighted=True)
    v = torch.randn_like(x)
    hvps = []
    for fn in (fused_ls_ce, ls_ce_reference):
        xg = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(fn(xg, t, -0.1, weight=w), xg, create_graph=True)
        (hvp,) = torch.autograd.grad((g * v).sum(), xg)
        hvps.append(hvp)
    torch.testing.assert_close(*hvps)


def test_lse_output_is_not_differentiable():
    x, t, _ = make((4, 6))
    loss, lse = torch.ops.lsmia.ls_ce_forward(x.requires_grad_(), t, None, 0.1, -100)
    assert loss.requires_grad and not lse.requires_grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [10, 300])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_inplace_gradient_equals_default_path(device, k, reduction):
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(33, 16, generator=g).to(device)
    t = torch.randint(0, k, (33,), generator=g).to(device)
    t[3] = -100
    weight = (torch.rand(k, generator=g) + 0.5).to(device)
    grads = []
    for inplace in (False, True):
        torch.manual_seed(0)
        lin = torch.nn.Linear(16, k).to(device)
        out = fused_ls_ce(lin(feats), t, -0.05, weight=weight, reduction=reduction, inplace=inplace)
        (out.sum() * 2 if reduction != "none" else (out * torch.arange(33, device=device)).sum()).backward()
        grads.append((out.detach(), lin.weight.grad, lin.bias.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_inplace_overwrites_logits_and_autograd_refuses_a_graph_that_needs_them():
    x, t, _ = make((6, 5))
    xg = x.clone().requires_grad_()
    logits = xg * 1.0
    loss = fused_ls_ce(logits, t, 0.1, inplace=True)
    loss.backward()
    torch.testing.assert_close(logits.detach(), xg.grad)  # the logits' storage holds the gradient
    produced_by_exp = xg.exp()  # exp saves its output for backward
    loss = fused_ls_ce(produced_by_exp, t, 0.1, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    with pytest.raises(ValueError, match="leaf"):
        fused_ls_ce(xg, t, inplace=True)
    with pytest.raises(ValueError, match="2-D"):
        fused_ls_ce(xg.reshape(2, 5, 3) * 1.0, t.reshape(2, 3), inplace=True)
    before = x.clone()
    with torch.no_grad():
        fused_ls_ce(x, t, 0.1, inplace=True)  # nothing to differentiate: the logits stay as they are
    assert torch.equal(x, before)
