"""fused_ls_ce under NaN, inf and large logits, on whatever CPU instruction set is in use (CI runs this
file under ATEN_CPU_CAPABILITY=default, avx2 and avx512), and the kernel table that ISA selects."""
import os

import pytest
import torch
import torch.nn.functional as F

import lsmia_ext
from lsmia_ext import fused_ls_ce
from lsmia_ext.ops.reference import ls_ce_reference

from kernel_utils import DEVICES

NAN, INF = float("nan"), float("inf")


def special_rows(k, dtype, device="cpu", seed=0):
    """24 rows (more than one vector group of rows) where some rows hold NaN / inf logits, between
    normal rows: each special row must poison only itself, exactly as in torch."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, k, generator=g, dtype=torch.float64) * 3
    t = torch.randint(1, k, (24,), generator=g)
    t[7] = 0
    x[1, 0] = NAN              # NaN in another class, first element of the row
    x[3, t[3]] = NAN           # NaN at the target
    x[5, 0] = INF              # +inf in another class
    x[9, t[9]] = INF           # +inf at the target
    x[11, 0] = -INF            # -inf in another class
    x[13, t[13]] = -INF        # -inf at the target
    x[15] = -INF               # only -inf
    x[17, :] = 1e4             # large equal logits
    x[19, -1] = NAN            # NaN as the last element
    x[21, 0] = -INF
    x[21, -1] = INF            # both infinities
    x[7, 0] = 80.0             # exp would overflow without the shift
    return x.to(device=device, dtype=dtype), t.to(device)


def run(fn, x, t, alpha, **kw):
    xg = x.detach().clone().requires_grad_()
    loss = fn(xg, t, alpha, reduction="none", **kw)
    loss.sum().backward()
    return loss.detach(), xg.grad


def torch_ce(x, t, alpha, **kw):
    return F.cross_entropy(x, t, label_smoothing=alpha, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [6, 32, 300])  # vector lanes per row (K <= 64) and row-by-row paths
@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0])
def test_nan_and_inf_match_torch(device, dtype, k, alpha):
    x, t = special_rows(k, dtype, device)
    ours, ours_grad = run(fused_ls_ce, x, t, alpha)
    theirs, their_grad = run(torch_ce, x, t, alpha)
    torch.testing.assert_close(ours, theirs, equal_nan=True, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours_grad, their_grad, equal_nan=True, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [6, 32, 300])
@pytest.mark.parametrize("alpha", [-0.3, -0.05])
def test_nan_and_inf_follow_the_formula_for_negative_alpha(device, k, alpha):
    x, t = special_rows(k, torch.float32, device)
    ours, ours_grad = run(fused_ls_ce, x, t, alpha)
    ref, ref_grad = run(lambda z, y, a, **kw: ls_ce_reference(z.double(), y, a, **kw), x, t, alpha)
    torch.testing.assert_close(ours.double(), ref, equal_nan=True, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours_grad.double(), ref_grad.double(), equal_nan=True, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [6, 32, 300])
def test_a_nan_logit_makes_the_row_nan_with_alpha_zero(device, k):
    """alpha = 0 has no sum(z) term that would carry the NaN anyway (issue 12, item 1)."""
    x, t = special_rows(k, torch.float32, device)
    x[0, 0], t[0] = NAN, 1
    loss, grad = run(fused_ls_ce, x, t, 0.0)
    assert torch.isnan(loss[0]) and torch.isnan(grad[0]).all()
    assert torch.isfinite(loss[2]) and torch.isfinite(grad[2]).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_nan_and_inf_in_half_precision(dtype):
    x, t = special_rows(32, dtype)
    ours, _ = run(fused_ls_ce, x, t, 0.1)
    theirs, _ = run(lambda z, y, a, **kw: torch_ce(z.float(), y, a, **kw), x, t, 0.1)
    assert torch.equal(torch.isnan(ours), torch.isnan(theirs))
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))


@pytest.mark.parametrize("offset,k", [(1e4, 1000), (3e4, 32000), (1e4, 10)])
def test_a_large_shared_offset_cancels(offset, k):
    """The raw form lse - (1 - a) z_y - (a / K) sum z loses about 1e-3 here in float32 (issue 12,
    item 5); the shift-invariant form keeps the error at float32 rounding of the O(1) result."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(8, k, generator=g, dtype=torch.float64) * 3 + offset).float()
    t = torch.randint(0, k, (8,), generator=g)
    ours = fused_ls_ce(x, t, -0.3, reduction="none")
    exact = ls_ce_reference(x.double(), t, -0.3, reduction="none")
    assert (ours.double() - exact).abs().max().item() < 5e-5


def test_kernel_table_follows_aten_cpu_capability():
    """CI sets ATEN_CPU_CAPABILITY to run these tests on each kernel table; make sure it took effect."""
    torch_cap = torch.backends.cpu.get_cpu_capability()
    expected = "AVX512" if torch_cap.startswith("AVX512") else "AVX2" if torch_cap.startswith("AVX2") else "DEFAULT"
    assert lsmia_ext.cpu_kernel_isa() == expected
    wanted = os.environ.get("ATEN_CPU_CAPABILITY", "").upper()
    if wanted in ("DEFAULT", "AVX2"):
        assert lsmia_ext.cpu_kernel_isa() == wanted


def check_double_backward_skips_bad_labels(device, weighted):
    """The double backward's d(logits) with labels outside [0, K): the kernels skip such rows (a GPU build
    without device asserts gives them zero gradients), so the second-order term must be 0 there, exactly
    as for an ignored row, and the other rows must not change (nor may a bad label index the weights).
    Called directly: on the CPU (and on a GPU with asserts) the op refuses such labels before a graph exists."""
    from types import SimpleNamespace

    from lsmia_ext.ops.ls_ce import _double_backward

    g = torch.Generator().manual_seed(0)
    k = 5
    x = torch.randn(6, k, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 7, 2, -3, -100, 4])
    bad = torch.tensor([False, True, False, True, False, False])
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.5 if weighted else None
    v = torch.randn(6, k, generator=g, dtype=torch.float64)
    saved = [torch.linspace(0.5, 1.5, 6, dtype=torch.float64), x, None, w, torch.logsumexp(x, 1)]

    def d_logits(target):
        saved[2] = target
        ctx = SimpleNamespace(saved_tensors=[s if s is None else s.to(device) for s in saved], alpha=0.1,
                              ignore_index=-100, needs_input_grad=(False, True) + (False,) * 5)
        return _double_backward(ctx, v.to(device))[1].cpu()

    got = d_logits(t)
    assert torch.equal(got, d_logits(torch.where(bad, -100, t)))
    assert not got[bad].any() and got[~bad & (t != -100)].abs().sum(1).gt(0).all()


@pytest.mark.parametrize("weighted", [False, True])
def test_double_backward_skips_labels_outside_the_classes(weighted):
    check_double_backward_skips_bad_labels("cpu", weighted)
