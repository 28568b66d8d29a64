"""CUDA-only behaviour of the kernels: NaN rows, device-side label asserts, CUDA-graph capture,
streams, agreement with the CPU kernels. Skipped without a GPU or without the CUDA kernels in the
build; bench/gpu_check.sh runs them (with every other `cuda`-marked test) on a GPU machine."""
import subprocess
import sys
import textwrap

import pytest
import torch

from lsmia_ext import LatentAdam, fused_ls_ce
from lsmia_ext.ops.reference import ls_ce_reference

from kernel_utils import CUDA

pytestmark = [pytest.mark.cuda, CUDA]


@pytest.mark.parametrize("k", [6, 32, 300, 5000])
def test_nan_logit_poisons_its_row_with_alpha_zero(k):
    """The old online-softmax merge dropped a NaN that was a lane's first element (issue 12, item 1)."""
    x = torch.randn(64, k, device="cuda")
    t = torch.randint(1, k, (64,), device="cuda")
    x[0, 0] = float("nan")
    x[5, 0] = float("inf")
    xg = x.clone().requires_grad_()
    loss = fused_ls_ce(xg, t, 0.0, reduction="none")
    loss.sum().backward()
    assert torch.isnan(loss[0]) and torch.isnan(loss[5]) and torch.isfinite(loss[1:5]).all()
    assert torch.isnan(xg.grad[0]).all() and torch.isfinite(xg.grad[1:5]).all()


# (4, 7, 33), (3, 19, 1000), (3, 150, 64): a thread per row (coalesced maps); (4, 7, 20): a warp per row
# (M < 32); (3, 2000, 5), (8, 40000): a block per row
@pytest.mark.parametrize("shape", [(513, 10), (64, 1000), (8, 40000), (4, 7, 33), (4, 7, 20), (3, 19, 1000),
                                   (3, 150, 64), (3, 2000, 5)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_matches_cpu_kernels_with_weights_and_special_values(shape, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    k = shape[1]
    t = torch.randint(0, k, (shape[0], *shape[2:]), generator=g)
    t.view(-1)[0] = -100
    x.view(shape[0], k, -1)[1, 0, 0] = float("nan")
    x.view(shape[0], k, -1)[2, 1, 0] = float("-inf")
    w = torch.rand(k, generator=g) + 0.5
    for alpha in (-0.3, 0.0, 0.1):
        out = []
        for dev in ("cpu", "cuda"):
            xg = x.to(dev).requires_grad_()
            loss = fused_ls_ce(xg, t.to(dev), alpha, weight=w.to(dev), reduction="none")
            loss.backward(torch.ones_like(loss))
            out.append((loss.float().cpu(), xg.grad.float().cpu()))
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
        for a, b in zip(*out):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol, equal_nan=True)


def test_inplace_gradient_matches_default_path():
    x = torch.randn(300, 16, device="cuda")
    t = torch.randint(0, 50, (300,), device="cuda")
    grads = []
    for inplace in (False, True):
        torch.manual_seed(0)
        lin = torch.nn.Linear(16, 50).cuda()
        fused_ls_ce(lin(x), t, -0.05, inplace=inplace).backward()
        grads.append(lin.weight.grad)
    torch.testing.assert_close(*grads)


def test_uses_current_stream():
    x = torch.randn(513, 1000)
    t = torch.randint(0, 1000, (513,))
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        xc = x.cuda().requires_grad_()
        loss = fused_ls_ce(xc, t.cuda(), -0.05, reduction="sum")
        loss.backward()
    stream.synchronize()
    xr = x.clone().requires_grad_()
    ref = fused_ls_ce(xr, t, -0.05, reduction="sum")
    ref.backward()
    torch.testing.assert_close(loss.cpu(), ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(xc.grad.cpu(), xr.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("label", [3, -1])
@pytest.mark.parametrize("inplace", [False, True])
def test_out_of_range_label_is_a_device_side_assert_naming_the_row(label, inplace):
    """Checked on the device (no host sync); the assert poisons the CUDA context, hence a subprocess.
    With weights, the mean's denominator (computed in Python from the valid labels only) must not index
    the weights with the bad label first (no IndexError, no wrap-around of -1)."""
    code = textwrap.dedent(f"""
        import torch, lsmia_ext
        lin = torch.nn.Linear(5, 3).cuda()
        t = torch.tensor([0, 1, {label}, 2], device="cuda")
        try:
            lsmia_ext.fused_ls_ce(lin(torch.randn(4, 5, device="cuda")), t, weight=torch.ones(3, device="cuda"),
                                  inplace={inplace})
            torch.cuda.synchronize()
        except RuntimeError as e:
            print("RAISED", e)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert f"target[2] = {label} is out of range" in out
    assert "IndexError" not in out
    assert "RAISED" in out or proc.returncode != 0


def test_denominator_counts_only_valid_labels():
    """What the kernels skip (ignored rows; bad labels when device asserts are compiled out) the mean's
    denominator does not count, with or without weights."""
    from lsmia_ext.ops.ls_ce import _denominator

    t = torch.tensor([0, -100, 2, -1, 3, 1], device="cuda")
    w = torch.tensor([1.0, 2.0, 4.0], device="cuda")
    assert _denominator(t, None, -100, torch.float32, 3).item() == 3
    assert _denominator(t, w, -100, torch.float32, 3).item() == 1 + 4 + 2


def test_more_rows_than_a_grid_holds_are_refused_before_allocating():
    """A warp per row, 8 rows per block: 2**35 rows need 2**32 blocks (expanded tensors: no memory)."""
    n, m = 2 ** 20, 2 ** 15
    x = torch.zeros(1, 1, 1, device="cuda").expand(n, 2, m)
    t = torch.zeros(1, 1, dtype=torch.long, device="cuda").expand(n, m)
    with pytest.raises(ValueError, match="more than a grid holds"):
        fused_ls_ce(x, t, reduction="none")


@pytest.mark.parametrize("path", ["default", "inplace"])
def test_non_finite_upstream_of_an_ignored_row_and_views_in_place(path):
    """Issue 20 on CUDA: an ignored row's gradient is 0 whatever its upstream gradient; inplace=True
    works on a transposed view; the batched backward (jacobian(vectorize=True)) uses the vmap rule."""
    torch.manual_seed(0)
    x = torch.randn(6, 4, device="cuda", dtype=torch.float64)
    t = torch.tensor([0, -100, 2, 1, 4, 3], device="cuda")
    up = torch.tensor([1.0, float("nan"), 0.5, 2.0, 1.0, 1.0], device="cuda", dtype=torch.float64)
    grads = []
    for fn in (lambda *a, **kw: fused_ls_ce(*a, inplace=path == "inplace", **kw), ls_ce_reference):
        w = torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64).cuda().requires_grad_()
        logits = (w.t() @ x.t()).t()  # a view (transpose) of the product
        fn(logits, t, 0.1, reduction="none").backward(up)
        grads.append(w.grad)
    assert torch.isfinite(grads[0]).all()
    torch.testing.assert_close(*grads, rtol=1e-10, atol=1e-10)
    z = torch.randn(6, 5, device="cuda", dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda a: fused_ls_ce(a, t, 0.1, reduction="none"), z, vectorize=True)
    ref = torch.autograd.functional.jacobian(lambda a: ls_ce_reference(a, t, 0.1, reduction="none"), z)
    torch.testing.assert_close(jac, ref, rtol=1e-10, atol=1e-10)


def test_ls_ce_and_latent_adam_step_capture_in_a_cuda_graph():
    """No host synchronisation in either op or in LatentAdam.step: all three can be captured."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 100).cuda()
    x = torch.randn(256, 32, device="cuda")
    t = torch.randint(0, 100, (256,), device="cuda")
    latents = torch.randn(64, 512, device="cuda", requires_grad=True)
    opt = LatentAdam([latents], lr=0.01)
    opt.set_lr(torch.full((64,), 0.01, device="cuda"))

    def step():
        loss = fused_ls_ce(lin(x), t, -0.05)
        loss.backward()
        latents.grad = latents.detach() * 0.1
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up outside the graph (allocations, optimizer state)
            lin.zero_grad(set_to_none=False)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    lin.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        captured = step()
    before = latents.detach().clone()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.isfinite(captured) and not torch.equal(latents.detach(), before)


@pytest.mark.parametrize("weighted", [False, True])
def test_double_backward_skips_labels_outside_the_classes(weighted):
    """The second-order path (create_graph=True) on CUDA tensors: a bad label's row gets 0, like the
    first-order kernel's (which skips it when device asserts are compiled out), never the weights' index."""
    from test_ls_ce_special import check_double_backward_skips_bad_labels

    check_double_backward_skips_bad_labels("cuda", weighted)
