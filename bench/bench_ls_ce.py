"""fused_ls_ce forward+backward vs what users would use instead, side by side in one run.

alpha = 0.1: torch's F.cross_entropy(label_smoothing=0.1) (the same loss).
alpha = -0.05: torch has no op (it ignores negative smoothing), so the plain-PyTorch reference.
floor: one read of the logits (logits.sum()), measured in the same rounds: no fused op can beat it.
In-place table: fused_ls_ce(inplace=True) (gradient written over the logits in the forward) next to
the default path and torch; every variant gets its logits from logits = x.clone() (the producer; its
time is shown) because the in-place path needs logits made by an op, and fresh ones every call.
Writes bench/results_ls_ce.md and bench/results_ls_ce_inplace.md (or --out and <out stem>_inplace.md).
Run: python -m bench.bench_ls_ce [--quick] [--threads 1] [--devices cpu,cuda] [--shapes 65536x10,...]
(--shapes: only these shapes of the main table, e.g. to check one row; the in-place table is then skipped)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

import lsmia_ext
from lsmia_ext.ops.reference import ls_ce_reference

from .harness import interleaved, parse_bench_args, write_table

SHAPES = [(65536, 10), (4096, 1000), (1024, 32768), (8, 21, 128, 128)]  # last: a segmentation map
DTYPES = [torch.float32, torch.bfloat16]
INPLACE_SHAPES = [(1024, 32768), (4096, 1000)]


def make(shape, dtype, device):
    gen = torch.Generator(device="cpu").manual_seed(0)
    logits = (torch.randn(shape, generator=gen) * 2).to(device=device, dtype=dtype)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=gen).to(device)
    return logits, target


def fwd_bwd(loss_fn, logits, target):
    def run():
        x = logits.detach().requires_grad_()
        loss_fn(x, target).backward()
        return x.grad
    return run


def mib(res):
    return res["peak_bytes"] / 2**20


def kernel_table(device) -> str:
    """The kernel table a row ran on: the CPU table torch dispatches to (ATEN_CPU_CAPABILITY forces it), or cuda."""
    return lsmia_ext.cpu_kernel_isa() if device == "cpu" else device


def bench_case(shape, dtype, device, rounds):
    logits, target = make(shape, dtype, device)
    rows = []
    for alpha, name, baseline in (
        (0.1, "torch F.cross_entropy(label_smoothing=0.1)",
         lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1)),
        (-0.05, "plain-PyTorch reference (torch ignores alpha<0)",
         lambda x, t: ls_ce_reference(x, t, -0.05)),
    ):
        res = interleaved({"fused": fwd_bwd(lambda x, t: lsmia_ext.fused_ls_ce(x, t, alpha), logits, target),
                           "baseline": fwd_bwd(baseline, logits, target),
                           "floor": lambda: logits.sum(), "exp": lambda: torch.exp(logits)},
                          rounds=rounds, device=device)
        f, b, fl, ex = res["fused"], res["baseline"], res["floor"], res["exp"]
        rows.append({
            "device": device, "kernel table": kernel_table(device), "shape": " x ".join(map(str, shape)), "dtype": str(dtype).replace("torch.", ""),
            "alpha": alpha, "baseline": name, "fused ms": f["median_ms"], "baseline ms": b["median_ms"],
            "speed-up": b["median_ms"] / f["median_ms"], "floor ms": fl["median_ms"],
            "fused / floor": f["median_ms"] / fl["median_ms"], "exp ms": ex["median_ms"],
            "fused / exp": f["median_ms"] / ex["median_ms"],
            "fused extra MiB": mib(f), "baseline extra MiB": mib(b),
        })
        print(rows[-1], flush=True)
    return rows


def bench_inplace(shape, device, rounds):
    base, target = make(shape, torch.float32, device)
    x0 = base.clone().requires_grad_()

    def step(loss_fn):
        def run():
            x0.grad = None
            loss_fn(x0.clone(), target).backward()
            return x0.grad
        return run

    def produce():
        with torch.no_grad():
            return x0.clone()

    res = interleaved({
        "default": step(lambda x, t: lsmia_ext.fused_ls_ce(x, t, 0.1)),
        "inplace": step(lambda x, t: lsmia_ext.fused_ls_ce(x, t, 0.1, inplace=True)),
        "torch": step(lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1)),
        "producer": produce,
    }, rounds=rounds, device=device)
    row = {"device": device, "shape": " x ".join(map(str, shape)), "dtype": "float32"}
    for name in ("default", "inplace", "torch", "producer"):
        row[f"{name} ms"] = res[name]["median_ms"]
        row[f"{name} extra MiB"] = mib(res[name])
    row["inplace vs default"] = res["default"]["median_ms"] / res["inplace"]["median_ms"]
    row["inplace vs torch"] = res["torch"]["median_ms"] / res["inplace"]["median_ms"]
    print(row, flush=True)
    return row


def main(argv=None):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--shapes", default=None)
    only, argv = pre.parse_known_args(argv)
    args = parse_bench_args(argv, Path(__file__).with_name("results_ls_ce.md"), __doc__.splitlines()[0])
    shapes = SHAPES if only.shapes is None else [tuple(int(n) for n in s.split("x")) for s in only.shapes.split(",")]
    rows = [r for d in args.devices for shape in shapes for dt in DTYPES for r in bench_case(shape, dt, d, args.rounds)]
    cols = ["device", "kernel table", "shape", "dtype", "alpha", "baseline", "fused ms", "baseline ms", "speed-up",
            "floor ms", "fused / floor", "exp ms", "fused / exp", "fused extra MiB", "baseline extra MiB"]
    notes = ("Forward + backward, median of rounds x 5 calls measured round-robin (fused, baseline and the "
             "floor alternate). 'extra' = peak memory allocated during one call beyond its inputs; the gradient "
             "itself is numel x dtype bytes. floor = one read of the logits (logits.sum()); exp = one torch.exp pass "
             "over the logits (a vectorised pass that writes N x K: what 'within 2x of one exp pass' compares "
             "with). Kernels: "
             + lsmia_ext.cpu_kernel_isa() + " CPU table.")
    write_table(args.out, "fused_ls_ce forward + backward", rows, cols, notes)
    if only.shapes is not None:
        return
    rows = [bench_inplace(shape, d, args.rounds) for d in args.devices for shape in INPLACE_SHAPES]
    cols = ["device", "shape", "dtype", "default ms", "inplace ms", "torch ms", "producer ms", "inplace vs default",
            "inplace vs torch", "default extra MiB", "inplace extra MiB", "torch extra MiB", "producer extra MiB"]
    notes = ("alpha = 0.1, reduction mean, forward + backward of x.clone() -> loss (the clone is the producer "
             "every variant pays; its own time and memory are the 'producer' columns). 'extra' = peak memory "
             "allocated during one call beyond its inputs. torch = F.cross_entropy(label_smoothing=0.1).")
    out = Path(args.out)
    write_table(out.with_name(out.stem + "_inplace.md"), "fused_ls_ce(inplace=True): gradient written over the "
                "logits", rows, cols, notes)


if __name__ == "__main__":
    main()
