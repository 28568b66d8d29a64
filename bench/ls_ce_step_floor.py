"""Where the training step's time goes at one small-K shape, and the floor any autograd op pays there.

One process, 1 thread, process CPU time, cases round-robin (harness.interleaved):
  step          fused_ls_ce(x, t, alpha) forward + backward (what bench_ls_ce times)
  op            the training op alone (loss, gradient, the mean's denominator and total in one pass)
  exp           one torch.exp pass over the logits (a vectorised pass writing N x K)
  engine        the backward of a trivial C++ graph, (y * 1).sum() on 8 rows, right after one exp pass
                over the logits (caches cold as after the op): the autograd engine's fixed cost there,
                which any loss's backward pays, torch's included
  torch         F.cross_entropy(label_smoothing=alpha) forward + backward
and the floor of the step: exp + engine (no op can read and write N x K faster than one exp pass, and
no backward escapes the engine). The kernel table is whatever ATEN_CPU_CAPABILITY selects.
Run, e.g. 7 fresh processes per table on a quiet machine:
  for i in 1 2 3 4 5 6 7; do ATEN_CPU_CAPABILITY=avx2 python -m bench.ls_ce_step_floor; done
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import lsmia_ext

from . import harness


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="65536x10", help="N x K")
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args(argv)
    n, k = (int(v) for v in args.shape.split("x"))
    torch.set_num_threads(1)
    harness.CLOCK = time.process_time
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, k, generator=gen) * 2
    t = torch.randint(0, k, (n,), generator=gen)
    small = torch.randn(8, k, generator=gen)

    def step(loss_fn):
        def run():
            y = x.detach().requires_grad_()
            loss_fn(y, t).backward()
            return y.grad
        return run

    def engine():
        torch.exp(x)
        y = small.detach().requires_grad_()
        loss = (y * 1).sum()
        t0 = time.process_time()  # only the backward: the exp pass before it is what makes the caches cold
        loss.backward()
        engine.spent.append(time.process_time() - t0)
    engine.spent = []

    res = harness.interleaved({
        "step": step(lambda y, tt: lsmia_ext.fused_ls_ce(y, tt, args.alpha)),
        "op": lambda: torch.ops.lsmia.ls_ce_forward_with_grad(x, t, None, args.alpha, -100, True),
        "exp": lambda: torch.exp(x),
        "engine": engine,
        "torch": step(lambda y, tt: F.cross_entropy(y, tt, label_smoothing=args.alpha)),
    }, rounds=args.rounds, device="cpu")
    ms = {name: r["median_ms"] for name, r in res.items()}
    spent = sorted(engine.spent)
    ms["engine"] = spent[len(spent) // 2] * 1e3
    ms["floor"] = ms["exp"] + ms["engine"]
    ms["torch / step"] = ms["torch"] / ms["step"]
    ms["torch / floor"] = ms["torch"] / ms["floor"]
    ms["op / exp"] = ms["op"] / ms["exp"]
    print(f"{lsmia_ext.cpu_kernel_isa()} {args.shape} alpha {args.alpha}: "
          + ", ".join(f"{name} {v:.3f}" for name, v in ms.items()), flush=True)
    return ms


if __name__ == "__main__":
    main()
