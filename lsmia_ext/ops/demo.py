"""`lsmia demo-loss`: fused_ls_ce next to torch's cross_entropy for a few alphas."""
from __future__ import annotations

import torch

from .ls_ce import fused_ls_ce


def add_arguments(parser) -> None:
    parser.add_argument("--rows", type=int, default=8, help="rows of random logits")
    parser.add_argument("--classes", type=int, default=10, help="number of classes K")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    """Prints fused_ls_ce next to torch's cross_entropy: equal for alpha >= 0, torch ignores alpha < 0."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(args.seed)
    logits = torch.randn(args.rows, args.classes, generator=gen) * 3
    target = torch.randint(0, args.classes, (args.rows,), generator=gen)
    print(f"{'alpha':>7} {'fused_ls_ce':>12} {'torch CE(ls=alpha)':>19}")
    for alpha in (0.1, 0.0, -0.05, -0.3):
        ours = fused_ls_ce(logits, target, alpha).item()
        theirs = F.cross_entropy(logits, target, label_smoothing=alpha).item()
        print(f"{alpha:>7} {ours:>12.6f} {theirs:>19.6f}")
    print("torch treats a negative label_smoothing as 0; fused_ls_ce applies it.")
    return 0
