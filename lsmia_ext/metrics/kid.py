"""Kernel Inception Distance (Binkowski et al. 2018) on the evaluation model's features, with a bootstrap
interval over the attack images.

KID is the unbiased estimate of MMD^2 between the two feature distributions under the cubic polynomial
kernel k(x, y) = (x . y / d + 1)^3, averaged over `subsets` random subsets of both sets of size
min(subset_size, m, n) each (as the authors' code and torch-fidelity compute it). Unlike FID it has an
unbiased estimator, so it can be compared across sample sizes; FID on a few hundred images is biased
upward. Features come from the evaluation model, not Inception-v3 (see frechet.py): values compare within
one study only.

Bootstrap: each replicate draws the attack images with replacement and recomputes KID on the same
reference subsets. In a replicate's within-attack term, pairs of two copies of the same image are left out
(sum over a != b of c_a c_b k(x_a, x_b) / (s^2 - sum c_a^2) for draw counts c), so the term estimates the
same quantity as the point estimate's instead of gaining k(x, x) terms from the duplicates.
"""
from __future__ import annotations

import torch

FID_RELIABLE_N = 2000  # below this many images on either side, FID is noticeably biased upward


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a b^T / d + 1)^3 for features a (m, d), b (n, d)."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> float:
    """Unbiased MMD^2 from the kernel matrices of x (m), y (n) and between them: the within-set means
    leave out the diagonal (m, n >= 2)."""
    return (_within(k_xx) + _within(k_yy) - 2 * k_xy.mean()).item()


def _within(k: torch.Tensor) -> torch.Tensor:
    """Mean of the off-diagonal entries of a square kernel matrix."""
    n = k.shape[0]
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def _check(feats: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or feats.shape[0] < 2:
        shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise ValueError(f"{name} must be a (N, F) tensor with N >= 2, got {shape}")
    x = feats.double()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def kernel_inception_distance(feats_real: torch.Tensor, feats_fake: torch.Tensor, subsets: int = 100,
                              subset_size: int = 1000, bootstrap: int = 200, seed: int = 0,
                              level: float = 0.95) -> dict:
    """{"kid": mean unbiased MMD^2 over the subsets, "kid_ci_low"/"kid_ci_high": percentile bootstrap
    interval at `level` over resampled attack (fake) images (None with bootstrap=0), "kid_subset_size"}.

    Seeded: the same inputs and seed give the same numbers."""
    real, fake = _check(feats_real, "feats_real"), _check(feats_fake, "feats_fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature widths differ: {real.shape[1]} vs {fake.shape[1]}")
    if subsets < 1 or subset_size < 2 or bootstrap < 0 or not 0 < level < 1:
        raise ValueError(f"need subsets >= 1, subset_size >= 2, bootstrap >= 0 and 0 < level < 1; got "
                         f"{subsets}, {subset_size}, {bootstrap}, {level}")
    m, n = fake.shape[0], real.shape[0]
    s = min(subset_size, m, n)
    g = torch.Generator().manual_seed(seed)
    k_ff, k_rr, k_fr = polynomial_kernel(fake, fake), polynomial_kernel(real, real), polynomial_kernel(fake, real)
    real_sets = torch.stack([torch.randperm(n, generator=g)[:s] for _ in range(subsets)])  # (S, s)
    fake_sets = torch.stack([torch.randperm(m, generator=g)[:s] for _ in range(subsets)])
    # per subset: within-real term (fixed for the bootstrap too) and the point estimate
    within_real = torch.stack([_within(k_rr[r][:, r]) for r in real_sets])
    point = torch.tensor([mmd2_unbiased(k_ff[f][:, f], k_rr[r][:, r], k_fr[f][:, r])
                          for f, r in zip(fake_sets, real_sets)], dtype=torch.float64)
    out = {"kid": point.mean().item(), "kid_ci_low": None, "kid_ci_high": None, "kid_subset_size": s}
    if bootstrap:
        # cross[a, j]: mean kernel of fake image a with real subset j
        cross = torch.stack([k_fr[:, r].mean(1) for r in real_sets], dim=1)  # (m, S)
        reps = torch.stack([_replicate(k_ff, cross, within_real, m, s, g) for _ in range(bootstrap)])
        reps = reps[torch.isfinite(reps)]
        tail = (1 - level) / 2
        lo, hi = torch.quantile(reps, torch.tensor([tail, 1 - tail], dtype=reps.dtype)).tolist()
        out.update(kid_ci_low=lo, kid_ci_high=hi)
    return out


def _replicate(k_ff: torch.Tensor, cross: torch.Tensor, within_real: torch.Tensor, m: int, s: int,
               g: torch.Generator) -> torch.Tensor:
    """KID of one bootstrap resample of the fake set: per subset, s fake draws with replacement (a subset
    of a resample is itself an iid draw) against the point estimate's real subsets."""
    subsets = within_real.shape[0]
    if s == m:  # the subset is the whole resample: one draw shared by every subset
        draws = torch.randint(m, (1, s), generator=g).expand(subsets, s)
    else:
        draws = torch.randint(m, (subsets, s), generator=g)
    counts = torch.zeros(subsets, m, dtype=k_ff.dtype).scatter_add_(1, draws, torch.ones_like(draws, dtype=k_ff.dtype))
    same = counts.square().sum(1)  # ordered pairs of draws of one image (the diagonal included)
    pair_sum = ((counts @ k_ff) * counts).sum(1) - (counts.square() * k_ff.diagonal()).sum(1)
    within_fake = pair_sum / (s * s - same)
    cross_mean = (counts * cross.T).sum(1) / s
    return (within_fake + within_real - 2 * cross_mean).mean()
