"""The few-class lane path (K <= 64) at the class counts around its block sizes (AVX2: 8 x 8 and
4-column transposes, a last block overlapping the one before, K < 4 reading past a row inside the
tensor), with ignored rows, weights, negative alpha and a row count that is not a multiple of the
vector width, on every entry: the training path, in place, and the forward / backward ops; and the
label count and range check. On AVX2 and AVX-512 (float32, 4 to 16 classes) the training path and in
place keep whole groups of 8 (AVX2) or 16 (AVX-512) rows in registers, two groups at a time, then one,
and leave the last, partial group to the lane buffer: 5 x 16 + 8 + 3 rows cover each on both (AVX2: 11
groups and 3 rows; AVX-512: 5 groups and 11 rows). Against the float64 reference; `make test-isa` runs
it under each CPU table."""
import pytest
import torch

from lsmia_ext import fused_ls_ce
from lsmia_ext.ops.reference import ls_ce_reference

TOL = dict(rtol=2e-5, atol=2e-5)  # float32 logits, as test_ls_ce.DTYPE_TOL


def make(n, k, weighted, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g) * 3
    t = torch.randint(0, k, (n,), generator=g)
    t[[3, n - 2]] = -100  # one ignored row in the first group, one in the last
    if n > 80:
        t[70] = -100  # and one in the fifth 16-row group (AVX-512: the one the register kernel takes alone)
    w = torch.rand(k, generator=g) + 0.5 if weighted else None
    return x, t, w


def reference(x, t, alpha, w, upstream):
    xr = x.double().requires_grad_()
    loss = ls_ce_reference(xr, t, alpha, weight=None if w is None else w.double(), reduction="none")
    (loss * upstream).sum().backward()
    return loss.detach(), xr.grad


@pytest.mark.parametrize("k", [3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 20, 31, 63])
@pytest.mark.parametrize("weighted", [False, True])
def test_lane_path_every_block_shape(k, weighted):
    n = 16 * 5 + 8 + 3
    x, t, w = make(n, k, weighted, seed=k)
    up = torch.rand(n, dtype=torch.float64) + 0.5
    for alpha in (0.0, 0.1, -0.05):
        ref_loss, ref_grad = reference(x, t, alpha, w, up)
        xg = x.clone().requires_grad_()  # training path: gradient computed in the forward
        loss = fused_ls_ce(xg, t, alpha, weight=w, reduction="none")
        (loss.double() * up).sum().backward()
        torch.testing.assert_close(loss.double(), ref_loss, **TOL)
        torch.testing.assert_close(xg.grad.double(), ref_grad, **TOL)

        loss, lse = torch.ops.lsmia.ls_ce_forward(x, t, w, alpha, -100)  # forward op, then backward op
        torch.testing.assert_close(loss.double(), ref_loss, **TOL)
        grad = torch.ops.lsmia.ls_ce_backward(up.float(), x, t, w, lse, alpha, -100)
        torch.testing.assert_close(grad.double(), ref_grad, **TOL)

        ref_loss, ref_grad = reference(x, t, alpha, w, torch.ones(n, dtype=torch.float64))
        x0 = x.clone().requires_grad_()  # in place: the gradient written over the logits
        fused_ls_ce(x0 * 1.0, t, alpha, weight=w, reduction="sum", inplace=True).backward()
        torch.testing.assert_close(x0.grad.double(), ref_grad, **TOL)


@pytest.mark.parametrize("k", [4, 10, 16])
def test_training_path_with_strided_labels(k):
    """Labels read through a stride (a view of every other label) on the training path (whole 8- and
    16-row groups, two at a time and alone)."""
    n = 16 * 3 + 8
    x, t, _ = make(n, k, False, seed=k)
    t2 = torch.stack([t, torch.zeros_like(t)], 1).flatten()[::2]  # same labels, stride 2
    assert t2.stride() == (2,)
    ref_loss, ref_grad = reference(x, t, 0.1, None, torch.ones(n, dtype=torch.float64))
    xg = x.clone().requires_grad_()
    loss = fused_ls_ce(xg, t2, 0.1, reduction="none")
    loss.sum().backward()
    torch.testing.assert_close(loss.double(), ref_loss, **TOL)
    torch.testing.assert_close(xg.grad.double(), ref_grad, **TOL)


@pytest.mark.parametrize("n", [1, 4, 7, 8, 9, 37])
def test_label_count_and_range_check(n):
    """The vectorised label pass: 'mean' divides by the rows not ignored (vector body and tail), and
    an out-of-range label anywhere is one IndexError naming its position."""
    x, t, _ = make(max(n, 4), 5, False, seed=n)
    x, t = x[:n], t[:n].clone()
    t[::3] = -100
    valid = t != -100
    expected = ls_ce_reference(x.double(), t, 0.1, reduction="sum") / valid.sum()
    torch.testing.assert_close(fused_ls_ce(x, t, 0.1).double(), expected, equal_nan=True, **TOL)  # n = 1: all ignored
    for i in {0, n // 2, n - 1}:
        bad = t.clone()
        bad[i] = 5 if i % 2 else -1
        with pytest.raises(IndexError, match=rf"target\[{i}\] = {bad[i].item()} is out of range"):
            fused_ls_ce(x, bad, 0.1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("k", [3, 10, 100])  # lane buffer, AVX2 registers, row by row
@pytest.mark.parametrize("n", [511, 512, 513, 2100])
def test_training_path_sums_its_loss_rows(dtype, k, n):
    """The training op sums the loss rows itself, block by block of 512 rows as the kernel writes them
    (the lane and row paths alike): 'sum' and 'mean' against the float64 reference, with ignored rows."""
    x, t, _ = make(n, k, False, seed=n + k)
    x = x.to(dtype)
    t[::7] = -100
    for reduction in ("sum", "mean"):
        xg = x.clone().requires_grad_()
        got = fused_ls_ce(xg, t, 0.1, reduction=reduction)
        got.backward()
        ref = ls_ce_reference(x.double(), t, 0.1, reduction=reduction)
        torch.testing.assert_close(got.double(), ref, rtol=1e-5 if dtype != torch.bfloat16 else 1e-2, atol=0)
