"""fused_ls_ce forward+backward vs what users would use instead, side by side in one run.

alpha = 0.1: torch's F.cross_entropy(label_smoothing=0.1) (the same loss).
alpha = -0.05: torch has no op (it ignores negative smoothing), so the plain-PyTorch reference.
Writes bench/results_ls_ce.md.   Run: python -m bench.bench_ls_ce [--quick]
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

import lsmia_ext
from lsmia_ext.reference import ls_ce_reference

from .harness import interleaved, parse_bench_args, write_table

SHAPES = [(65536, 10), (4096, 1000), (1024, 32768)]
DTYPES = [torch.float32, torch.bfloat16]


def fwd_bwd(loss_fn, logits, target):
    def run():
        x = logits.detach().requires_grad_()
        loss_fn(x, target).backward()
        return x.grad
    return run


def bench_case(n, k, dtype, device, rounds):
    gen = torch.Generator(device="cpu").manual_seed(0)
    logits = (torch.randn(n, k, generator=gen) * 2).to(device=device, dtype=dtype)
    target = torch.randint(0, k, (n,), generator=gen).to(device)
    rows = []
    for alpha, name, baseline in (
        (0.1, "torch F.cross_entropy(label_smoothing=0.1)",
         lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1)),
        (-0.05, "plain-PyTorch reference (torch ignores alpha<0)",
         lambda x, t: ls_ce_reference(x, t, -0.05)),
    ):
        res = interleaved({"fused": fwd_bwd(lambda x, t: lsmia_ext.fused_ls_ce(x, t, alpha), logits, target),
                           "baseline": fwd_bwd(baseline, logits, target)}, rounds=rounds, device=device)
        f, b = res["fused"], res["baseline"]
        grad_bytes = logits.numel() * logits.element_size()
        rows.append({
            "device": device, "N x K": f"{n} x {k}", "dtype": str(dtype).replace("torch.", ""), "alpha": alpha,
            "baseline": name, "fused ms": f["median_ms"], "baseline ms": b["median_ms"],
            "speed-up": b["median_ms"] / f["median_ms"],
            "fused extra MiB": f["peak_bytes"] / 2**20, "baseline extra MiB": b["peak_bytes"] / 2**20,
            "fused extra B/row beyond grad": (f["peak_bytes"] - grad_bytes) / n,
        })
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    args = parse_bench_args(argv, Path(__file__).with_name("results_ls_ce.md"), __doc__.splitlines()[0])
    rows = [r for d in args.devices for (n, k) in SHAPES for dt in DTYPES
            for r in bench_case(n, k, dt, d, args.rounds)]
    cols = ["device", "N x K", "dtype", "alpha", "baseline", "fused ms", "baseline ms", "speed-up",
            "fused extra MiB", "baseline extra MiB", "fused extra B/row beyond grad"]
    notes = ("Forward + backward, median of 5 rounds x 5 calls measured round-robin (fused and baseline "
             "alternate). 'extra' = peak memory allocated during one call beyond its inputs; the gradient "
             "itself is N x K x dtype bytes. Kernels: " + lsmia_ext.cpu_kernel_isa() + " CPU table.")
    write_table(args.out, "fused_ls_ce forward + backward", rows, cols, notes)


if __name__ == "__main__":
    main()
