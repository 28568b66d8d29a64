"""Batched latent Adam step vs what users would use instead, side by side in one run.

Per shape (B latents of D values, float32): LatentAdam.step over all rows, LatentAdam.step with a
random active mask and per-row lr, torch.optim.Adam(foreach=False) and torch.optim.Adam(fused=True)
over the whole (B, D) tensor (one step count for all rows: they cannot mask rows), and the per-row
loop that per-row step counts and masks need without the op (one torch.optim.Adam per row).
Writes bench/results_latent_adam.md.   Run: python -m bench.bench_latent_adam [--quick]
"""
from __future__ import annotations

from pathlib import Path

import torch

import lsmia_ext
from lsmia_ext import LatentAdam

from .harness import interleaved, parse_bench_args, write_table

SHAPES = [(4096, (512,)), (200, (18, 512))]
BETAS = (0.1, 0.1)  # PPA's


def whole_tensor_step(make_opt, w0, grad):
    w = w0.clone().requires_grad_(True)
    w.grad = grad.clone()
    opt = make_opt(w)
    return opt.step


def per_row_loop(w0, grad, active):
    rows = [w0[i].clone().requires_grad_(True) for i in range(w0.shape[0])]
    for r, g in zip(rows, grad):
        r.grad = g.clone()
    opts = [torch.optim.Adam([r], lr=0.005, betas=BETAS) for r in rows]
    idx = active.nonzero().flatten().tolist()

    def step():
        for i in idx:
            opts[i].step()
    return step


def bench_shape(b, row_shape, device, rounds):
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn((b, *row_shape), generator=gen).to(device)
    grad = torch.randn((b, *row_shape), generator=gen).to(device)
    active = (torch.rand(b, generator=gen) < 0.5).to(device)
    row_lr = (torch.rand(b, generator=gen) * 0.01).to(device)

    def latent(mask=None, lr=None):
        w = w0.clone().requires_grad_(True)
        w.grad = grad.clone()
        opt = LatentAdam([w], lr=0.005, betas=BETAS)
        if mask is not None:
            opt.set_active(mask)
        if lr is not None:
            opt.set_lr(lr)
        return opt.step

    cases = {
        "LatentAdam (all rows)": latent(),
        "LatentAdam (mask + per-row lr)": latent(active, row_lr),
        "Adam(foreach=False)": whole_tensor_step(
            lambda w: torch.optim.Adam([w], lr=0.005, betas=BETAS, foreach=False), w0, grad),
        "Adam(fused=True)": whole_tensor_step(
            lambda w: torch.optim.Adam([w], lr=0.005, betas=BETAS, fused=True), w0, grad),
        "per-row loop (mask)": per_row_loop(w0, grad, active.cpu()),
    }
    res = interleaved(cases, rounds=rounds, repeats=5, device=device)
    fused_ms = res["LatentAdam (all rows)"]["median_ms"]
    masked_ms = res["LatentAdam (mask + per-row lr)"]["median_ms"]
    rows = []
    for name, r in res.items():
        rows.append({
            "device": device, "B x D": f"{b} x {' x '.join(map(str, row_shape))}", "implementation": name,
            "median ms": r["median_ms"], "min ms": r["min_ms"], "extra MiB": r["peak_bytes"] / 2**20,
            "LatentAdam speed-up": r["median_ms"] / (masked_ms if name == "per-row loop (mask)" else fused_ms),
        })
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    args = parse_bench_args(argv, Path(__file__).with_name("results_latent_adam.md"), __doc__.splitlines()[0])
    rows = [r for d in args.devices for (b, shape) in SHAPES for r in bench_shape(b, shape, d, args.rounds)]
    cols = ["device", "B x D", "implementation", "median ms", "min ms", "extra MiB", "LatentAdam speed-up"]
    notes = ("One optimizer step on float32 latents, Adam betas (0.1, 0.1); median of rounds x 5 calls "
             "measured round-robin. 'LatentAdam speed-up' = this row's time / LatentAdam's time (the masked "
             "LatentAdam for the per-row loop, which steps the same random half of the rows with per-row "
             "step counts). 'extra' = peak memory allocated during one call beyond its inputs. Kernels: "
             + lsmia_ext.cpu_kernel_isa() + " CPU table.")
    write_table(args.out, "Batched latent Adam step", rows, cols, notes)


if __name__ == "__main__":
    main()
