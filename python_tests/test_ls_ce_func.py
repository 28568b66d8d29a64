"""fused_ls_ce under torch.func (grad, vjp, jvp, jacrev, hessian, vmap; per-sample gradients as in
DP-SGD) and forward-mode AD, which run the plain-PyTorch formula; and the vmap rule of the backward op."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import func

from lsmia_ext import fused_ls_ce
from lsmia_ext.ops.reference import ls_ce_reference

F64 = dict(rtol=1e-10, atol=1e-10)  # float64 both ways
F32 = dict(rtol=1e-5, atol=1e-6)  # float32 kernels against float32 plain ops: rounding of O(1) values


def data(n=6, k=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, k, generator=g, dtype=torch.float64) * 2).to(dtype)
    v = torch.randn(n, k, generator=g, dtype=torch.float64).to(dtype)
    t = torch.randint(0, k, (n,), generator=g)
    t[2] = -100
    w = (torch.rand(k, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    return z, v, t, w


def eager_grad(z, t, alpha, **kw):
    """The fast CPU path's gradient (the kernel's)."""
    zg = z.clone().requires_grad_()
    fused_ls_ce(zg, t, alpha, **kw).backward()
    return zg.grad


@pytest.mark.parametrize("alpha", [-0.2, 0.0, 0.1])
def test_jvp_equals_the_directional_derivative(alpha):
    z, v, t, w = data()
    _, tangent = func.jvp(lambda a: fused_ls_ce(a, t, alpha, weight=w), (z,), (v,))
    _, ref = func.jvp(lambda a: ls_ce_reference(a, t, alpha, weight=w), (z,), (v,))
    torch.testing.assert_close(tangent, ref, **F64)
    torch.testing.assert_close(tangent, (eager_grad(z, t, alpha, weight=w) * v).sum(), **F64)
    if alpha >= 0:
        _, theirs = func.jvp(lambda a: F.cross_entropy(a, t, weight=w, label_smoothing=alpha), (z,), (v,))
        torch.testing.assert_close(tangent, theirs, **F64)


def test_forward_mode_ad_outside_torch_func():
    z, v, t, _ = data()
    with fwAD.dual_level():
        loss = fused_ls_ce(fwAD.make_dual(z, v), t, 0.1, reduction="none")
        tangent = fwAD.unpack_dual(loss).tangent
    _, ref = func.jvp(lambda a: ls_ce_reference(a, t, 0.1, reduction="none"), (z,), (v,))
    torch.testing.assert_close(tangent, ref, **F64)


def test_grad_and_vjp_equal_the_kernels_gradient():
    z, v, t, w = data(dtype=torch.float32)
    torch.testing.assert_close(func.grad(lambda a: fused_ls_ce(a, t, 0.1, weight=w))(z),
                               eager_grad(z, t, 0.1, weight=w), **F32)
    up = torch.linspace(0.5, 1.5, 6)
    loss, pullback = func.vjp(lambda a: fused_ls_ce(a, t, 0.1, reduction="none"), z)
    (ours,) = pullback(up)
    zg = z.clone().requires_grad_()
    fused_ls_ce(zg, t, 0.1, reduction="none").backward(up)
    torch.testing.assert_close(ours, zg.grad, **F32)
    torch.testing.assert_close(loss, fused_ls_ce(z, t, 0.1, reduction="none"), **F32)


def test_jacrev_and_hessian_match_the_reference():
    z, _, t, w = data(n=4, k=3)
    for reduction in ("mean", "none"):
        ours = func.jacrev(lambda a: fused_ls_ce(a, t, -0.1, weight=w, reduction=reduction))(z)
        ref = torch.autograd.functional.jacobian(
            lambda a: ls_ce_reference(a, t, -0.1, weight=w, reduction=reduction), z)
        torch.testing.assert_close(ours, ref, **F64)
    ours = func.hessian(lambda a: fused_ls_ce(a, t, 0.3, weight=w))(z)
    ref = torch.autograd.functional.hessian(lambda a: ls_ce_reference(a, t, 0.3, weight=w), z)
    torch.testing.assert_close(ours, ref, **F64)


def test_vmap_of_the_loss_equals_a_loop():
    zs = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(1))
    ts = torch.randint(0, 5, (3, 6), generator=torch.Generator().manual_seed(1))
    ours = func.vmap(lambda a, y: fused_ls_ce(a, y, 0.1))(zs, ts)
    torch.testing.assert_close(ours, torch.stack([fused_ls_ce(a, y, 0.1) for a, y in zip(zs, ts)]), **F32)


@pytest.mark.parametrize("weighted", [False, True])
def test_per_sample_gradients_dp_sgd_style(weighted):
    """vmap(grad(loss_of_params)) per sample equals a loop of ordinary per-sample backward passes (the
    fast path's kernels), to float32 rounding."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10))
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 8, generator=g)
    y = torch.randint(0, 10, (12,), generator=g)
    w = torch.rand(10, generator=g) + 0.5 if weighted else None
    params = {k: p.detach() for k, p in model.named_parameters()}

    def loss_of_params(p, xi, yi):
        return fused_ls_ce(func.functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0), -0.05, weight=w)

    per_sample = func.vmap(func.grad(loss_of_params), in_dims=(None, 0, 0))(params, x, y)
    for i in range(12):
        model.zero_grad()
        fused_ls_ce(model(x[i:i + 1]), y[i:i + 1], -0.05, weight=w).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(per_sample[name][i], p.grad, **F32)


def test_alpha_is_checked_under_torch_func():
    z, _, t, _ = data()
    with pytest.raises(ValueError, match="alpha must be finite and <= 1, got 1.5"):
        func.grad(lambda a: fused_ls_ce(a, t, 1.5))(z)


def test_vmap_rule_of_the_backward_op_equals_a_loop():
    z, _, t, w = data(n=5, k=7, dtype=torch.float32)
    _, lse = torch.ops.lsmia.ls_ce_forward(z, t, w, 0.1, -100)
    gs = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))

    def backward(g):
        return torch.ops.lsmia.ls_ce_backward(g, z, t, w, lse, 0.1, -100)

    batched = func.vmap(backward)(gs)
    torch.testing.assert_close(batched, torch.stack([backward(g) for g in gs]), **F32)
