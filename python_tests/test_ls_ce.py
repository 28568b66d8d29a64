"""fused_ls_ce against a float64 reference, torch's cross_entropy, gradcheck, opcheck, torch.compile,
edge cases and bad inputs."""
import math

import pytest
import torch
import torch.nn.functional as F

import lsmia_ext
from lsmia_ext import AlphaSchedule, LabelSmoothingCrossEntropy, fused_ls_ce
from lsmia_ext.ops.reference import ls_ce_reference

from kernel_utils import CUDA, DEVICES

DTYPE_TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}
ALPHAS = [-0.3, -0.05, 0.0, 0.1, 1.0]


def make(n, k, dtype, device="cpu", seed=0, noncontig=False, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    if noncontig:  # every other column of a wider tensor, transposed storage
        x = (torch.randn(k * 2, n, generator=g) * scale).t()[:, ::2]
    else:
        x = torch.randn(n, k, generator=g) * scale
    t = torch.randint(0, k, (n,), generator=g)
    return x.to(device=device, dtype=dtype), t.to(device)


def reference64(x, t, alpha, **kw):
    return ls_ce_reference(x.double(), t, alpha, **kw)


def check_close(ours, ref, dtype):
    tol = DTYPE_TOL[dtype]
    torch.testing.assert_close(ours.double(), ref.double(), rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(DTYPE_TOL))
@pytest.mark.parametrize("k", [1, 2, 10, 64, 65, 1000, 32771])
@pytest.mark.parametrize("n", [0, 1, 37, 2049])
def test_forward_backward_match_reference(device, dtype, k, n):
    if n * k > 2_000_000:
        n = 40  # keeps the largest K cheap; still several chunks and rows per thread
    x, t = make(n, k, dtype, device, seed=n + k, noncontig=(k % 2 == 1))
    if n > 5:
        t[5] = -100
    for alpha in ALPHAS:
        xg = x.detach().clone().requires_grad_()
        loss = fused_ls_ce(xg, t, alpha, reduction="none")
        assert loss.dtype == dtype and loss.shape == (n,)
        ref = reference64(x, t, alpha, reduction="none")
        check_close(loss, ref, dtype)
        if n == 0:
            continue
        w = torch.randn(n, dtype=torch.float64, device=device)
        (loss.double() * w).sum().backward()
        xr = x.detach().double().requires_grad_()
        (ls_ce_reference(xr, t, alpha, reduction="none") * w).sum().backward()
        gtol = DTYPE_TOL[dtype] * (4 if dtype in (torch.bfloat16, torch.float16) else 1)
        torch.testing.assert_close(xg.grad.double(), xr.grad, rtol=gtol, atol=gtol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 1.0])
def test_equals_torch_cross_entropy_for_nonnegative_alpha(reduction, alpha):
    x, t = make(301, 13, torch.float32, seed=3)
    t[::7] = -1
    ours = fused_ls_ce(x, t, alpha, reduction=reduction, ignore_index=-1)
    theirs = F.cross_entropy(x, t, label_smoothing=alpha, reduction=reduction, ignore_index=-1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_negative_alpha_follows_formula_where_torch_ignores_it():
    x, t = make(50, 7, torch.float64, seed=4)
    ours = fused_ls_ce(x, t, -0.05)
    by_hand = (torch.logsumexp(x, 1) - 1.05 * x[torch.arange(50), t] + 0.05 / 7 * x.sum(1)).mean()
    torch.testing.assert_close(ours, by_hand)
    # torch silently treats label_smoothing < 0 as 0: our op must not
    assert not torch.allclose(ours, F.cross_entropy(x, t, label_smoothing=-0.05))


def test_negative_loss_values_are_legitimate():
    x = torch.tensor([[10.0, -10.0, -10.0]], dtype=torch.float64)
    loss = fused_ls_ce(x, torch.tensor([0]), -0.3)
    assert loss.item() < 0


def test_all_ignored_mean_is_nan_like_torch_and_sum_is_zero():
    x, t = make(5, 4, torch.float32)
    t[:] = -100
    assert math.isnan(fused_ls_ce(x, t, 0.1).item())
    assert math.isnan(F.cross_entropy(x, t, label_smoothing=0.1).item())
    assert fused_ls_ce(x, t, 0.1, reduction="sum").item() == 0.0
    xg = x.clone().requires_grad_()
    fused_ls_ce(xg, t, 0.1, reduction="sum").backward()
    assert torch.count_nonzero(xg.grad) == 0


@pytest.mark.parametrize("shape", [(0, 5), (0, 5, 2, 3), (0, 5, 0)], ids=str)
def test_empty_batch_like_torch(shape):
    x = torch.zeros(shape, requires_grad=True)
    t = torch.zeros((0, *shape[2:]), dtype=torch.long)
    for reduction in ("mean", "sum", "none"):
        ours = fused_ls_ce(x, t, 0.1, reduction=reduction)
        theirs = F.cross_entropy(x, t, label_smoothing=0.1, reduction=reduction)
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, equal_nan=True)
        with torch.no_grad():  # the op path
            torch.testing.assert_close(fused_ls_ce(x, t, 0.1, reduction=reduction), theirs.detach(), equal_nan=True)
    fused_ls_ce(x, t, 0.1, reduction="sum").backward()
    assert x.grad.shape == shape


@pytest.mark.parametrize("k", [6, 300])  # small-K and per-row paths
def test_nan_and_inf_rows_only_poison_themselves(k):
    x, t = make(6, k, torch.float32, seed=5)
    x[1, 2] = float("nan")
    x[3, 0] = float("inf")
    loss = fused_ls_ce(x, t, 0.1, reduction="none")
    assert math.isnan(loss[1]) and math.isnan(loss[3])
    good = [0, 2, 4, 5]
    check_close(loss[good], reference64(x[good], t[good], 0.1, reduction="none"), torch.float32)


def test_minus_inf_logit_of_other_class_with_alpha_zero_is_finite_like_torch():
    x = torch.tensor([[1.0, float("-inf"), 0.5]])
    t = torch.tensor([0])
    ours = fused_ls_ce(x, t, 0.0)
    torch.testing.assert_close(ours, F.cross_entropy(x, t))


def test_gradcheck_float64():
    x, t = make(9, 5, torch.float64, seed=6)
    t[2] = -100
    for alpha in (-0.3, 0.0, 0.2):
        for reduction in ("mean", "sum", "none"):
            xg = x.clone().requires_grad_()
            assert torch.autograd.gradcheck(lambda z: fused_ls_ce(z, t, alpha, reduction=reduction), (xg,))


def test_opcheck():
    w = torch.rand(9) + 0.5
    for k, dtype, weight, maps in ((5, torch.float32, None, False), (200, torch.float64, None, False),
                                   (9, torch.bfloat16, w, False), (9, torch.float32, w, True)):
        x, t = make(12, k, dtype, seed=7)
        if maps:
            x, t = x.reshape(3, 4, k).transpose(1, 2), t.reshape(3, 4)
        t.view(-1)[0] = -100
        x.requires_grad_()
        torch.library.opcheck(torch.ops.lsmia.ls_ce_forward.default, (x, t, weight, -0.05, -100))
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        lse = torch.logsumexp(x.detach().double(), 1)
        g = torch.ones(t.shape, dtype=acc)
        torch.library.opcheck(torch.ops.lsmia.ls_ce_backward.default, (g, x.detach(), t, weight, lse, -0.05, -100))
        scale = torch.tensor(0.5, dtype=acc)
        if not maps:
            torch.library.opcheck(torch.ops.lsmia.ls_ce_forward_grad_.default,
                                  (x.detach().clone(), t, weight, scale, -0.05, -100))


def test_torch_compile_fullgraph():
    x, t = make(64, 10, torch.float32, seed=8)
    w = torch.randn(10, 10, requires_grad=True)

    def step(inp, target):
        return fused_ls_ce(inp @ w, target, -0.05)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    loss = compiled(x, t)
    loss.backward()
    g_compiled = w.grad.clone()
    w.grad = None
    step(x, t).backward()
    torch.testing.assert_close(loss, step(x, t))
    torch.testing.assert_close(g_compiled, w.grad)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_inputs_raise_clear_errors(device):
    x, t = make(4, 3, torch.float32, device)
    if device == "cpu":  # on CUDA a bad label is a device-side assert (test_cuda_kernels.py)
        with pytest.raises(IndexError, match=r"target\[2\] = 3"):
            bad = t.clone()
            bad[2] = 3
            fused_ls_ce(x, bad)
        with pytest.raises(IndexError, match=r"target\[0\] = -1"):
            bad = t.clone()
            bad[0] = -1
            fused_ls_ce(x, bad)
    with pytest.raises(ValueError, match=r"need target of shape \(\)"):
        fused_ls_ce(x[0], t)
    with pytest.raises(ValueError, match="need target of shape"):
        fused_ls_ce(x, t[:, None])
    with pytest.raises(ValueError, match="need target of shape"):
        fused_ls_ce(x, t[:3])
    with pytest.raises(ValueError, match="0-d"):
        fused_ls_ce(x[0, 0], t[0])
    with pytest.raises(TypeError, match="int64"):
        fused_ls_ce(x, t.float())
    with pytest.raises(TypeError, match="float32"):
        fused_ls_ce(x.long(), t)
    with pytest.raises(ValueError, match="reduction"):
        fused_ls_ce(x, t, reduction="avg")
    with pytest.raises(ValueError, match=r"weight must be a floating tensor of shape \(3,\)"):
        fused_ls_ce(x, t, weight=torch.ones(4, device=device))
    for alpha in (1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            fused_ls_ce(x, t, alpha)
    if device == "cuda":
        with pytest.raises(ValueError, match="device|on"):
            fused_ls_ce(x, t.cpu())


def test_raw_op_checks_labels_before_reading():
    x, t = make(3, 4, torch.float32)
    t[1] = 99
    with pytest.raises(IndexError, match="out of range"):
        torch.ops.lsmia.ls_ce_forward(x, t, None, 0.0, -100)


def test_cpu_kernel_isa_is_reported():
    assert lsmia_ext.cpu_kernel_isa() in ("DEFAULT", "AVX2", "AVX512")


def test_module_alpha_can_change_between_steps():
    crit = LabelSmoothingCrossEntropy(0.1)
    x, t = make(20, 6, torch.float32, seed=9)
    a = crit(x, t)
    crit.alpha = -0.05
    b = crit(x, t)
    torch.testing.assert_close(b, fused_ls_ce(x, t, -0.05))
    assert not torch.allclose(a, b)
    crit.alpha = 2.0  # checked where it is used, by the op, as nn.CrossEntropyLoss checks label_smoothing
    with pytest.raises(ValueError, match="alpha must be finite and <= 1, got 2"):
        crit(x, t)
    with pytest.raises(ValueError, match="reduction must be one of"):
        LabelSmoothingCrossEntropy(reduction="bad")(x, t)


@pytest.mark.parametrize("alpha", [1.5, float("nan"), float("inf"), float("-inf")])
def test_bad_alpha_is_refused_once_at_each_boundary(alpha):
    """A config refuses it on load (naming the key); in Python the op refuses it, whichever way it gets
    there (function, module, schedule); nothing checks it in between."""
    from lsmia_ext.config import ConfigError, load_config
    from lsmia_ext.train import TrainConfig

    with pytest.raises(ConfigError, match="loss.alpha"):
        load_config(TrainConfig, "train-digits-target", {"loss.alpha": alpha})
    x, t = make(4, 3, torch.float32)
    message = "fused_ls_ce: alpha must be finite and <= 1"
    for loss in (lambda: fused_ls_ce(x, t, alpha), lambda: LabelSmoothingCrossEntropy(alpha)(x, t),
                 lambda: fused_ls_ce(x, t, AlphaSchedule(alpha, warmup=0, ramp=1)(5))):
        with pytest.raises(ValueError, match=message):
            loss()
    with pytest.raises(TypeError, match="AlphaSchedule: alpha must be a real number"):
        AlphaSchedule("0.1")


def test_alpha_schedule_values_per_epoch():
    s = AlphaSchedule(-0.05, warmup=2, ramp=4)
    got = [s(e) for e in range(8)]
    expected = [0.0, 0.0, -0.0125, -0.025, -0.0375, -0.05, -0.05, -0.05]
    assert got == pytest.approx(expected)
    assert AlphaSchedule(0.1)(0) == 0.1  # no warm-up, no ramp: alpha from the start
    assert AlphaSchedule(-0.05, warmup=3)(3) == -0.05  # ramp 0: jump right after warm-up
    with pytest.raises(ValueError, match="warmup"):
        AlphaSchedule(-0.05, warmup=-1)
    with pytest.raises(ValueError, match="epoch"):
        s(-1)
