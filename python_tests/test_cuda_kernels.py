"""CUDA-only behaviour of the kernels: NaN rows, device-side label asserts, CUDA-graph capture,
streams, agreement with the CPU kernels. Skipped without a GPU or without the CUDA kernels in the
build; bench/gpu_check.sh runs them (with every other `cuda`-marked test) on a GPU machine."""
import subprocess
import sys
import textwrap

import pytest
import torch

from lsmia_ext import LatentAdam, fused_ls_ce

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


@pytest.mark.parametrize("shape", [(513, 10), (64, 1000), (8, 40000), (4, 7, 33), (3, 2000, 5)], ids=str)
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


def test_out_of_range_label_is_a_device_side_assert_naming_the_row():
    """Checked on the device (no host sync); the assert poisons the CUDA context, hence a subprocess."""
    code = textwrap.dedent("""
        import torch, lsmia_ext
        x = torch.randn(4, 3, device="cuda")
        t = torch.tensor([0, 1, 3, 2], device="cuda")
        try:
            lsmia_ext.fused_ls_ce(x, t)
            torch.cuda.synchronize()
        except RuntimeError as e:
            print("RAISED", e)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert "target[2] = 3 is out of range" in out
    assert "RAISED" in out or proc.returncode != 0


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
