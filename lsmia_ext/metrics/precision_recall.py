"""Precision, recall, density and coverage (Naeem et al., ICML 2020) of generated against real features.

Each real sample i gets a ball of radius r_i = distance to its k-th nearest *other* real sample (each
fake sample j likewise a radius s_j among the fakes). With M fakes and N reals:
  precision = (1/M) #{j : Y_j lies in some real ball}
  recall    = (1/N) #{i : X_i lies in some fake ball}
  density   = 1/(k M) * sum_j #{i : Y_j lies in the ball of X_i}   (can exceed 1)
  coverage  = (1/N) #{i : the ball of X_i holds at least one fake}
The study uses prdc_per_class (per attacked class, then averaged, as the paper).
Balls are closed (distance <= radius). Features: the evaluation model's penultimate layer (see
frechet.py for why not Inception).
"""
from __future__ import annotations

import torch

CHUNK = 2048  # rows of a distance matrix held at once: keeps memory at CHUNK * N doubles


def _check(feats, name: str, k: int) -> torch.Tensor:
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
        raise ValueError(f"{name} must be a (N, F) tensor")
    if feats.shape[0] <= k:
        raise ValueError(f"{name} needs more than k={k} samples for k-nearest-neighbour radii, "
                         f"got {feats.shape[0]}")
    return feats.double()


def knn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of every row to its k-th nearest other row, (N,); computed in chunks of rows."""
    radii = []
    for start in range(0, feats.shape[0], CHUNK):
        d = torch.cdist(feats[start:start + CHUNK], feats)
        # k + 1 smallest: the row itself (distance 0) comes first
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def prdc(real_feats: torch.Tensor, fake_feats: torch.Tensor, k: int = 3) -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of `fake_feats` (M, F) against `real_feats` (N, F)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    real = _check(real_feats, "real_feats", k)
    fake = _check(fake_feats, "fake_feats", k)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature widths differ: real {real.shape[1]} vs fake {fake.shape[1]}")
    real_r, fake_r = knn_radii(real, k), knn_radii(fake, k)
    fake_in_real_balls = torch.zeros(fake.shape[0], dtype=torch.float64)  # how many real balls hold fake j
    real_covered = torch.zeros(real.shape[0], dtype=torch.bool)
    real_in_fake_ball = torch.zeros(real.shape[0], dtype=torch.bool)
    for start in range(0, real.shape[0], CHUNK):
        d = torch.cdist(real[start:start + CHUNK], fake)  # (chunk, M)
        inside = d <= real_r[start:start + CHUNK, None]
        fake_in_real_balls += inside.sum(dim=0)
        real_covered[start:start + CHUNK] = inside.any(dim=1)
        real_in_fake_ball[start:start + CHUNK] = (d <= fake_r[None, :]).any(dim=1)
    return {
        "precision": (fake_in_real_balls > 0).double().mean().item(),
        "recall": real_in_fake_ball.double().mean().item(),
        "density": (fake_in_real_balls.sum() / (k * fake.shape[0])).item(),
        "coverage": real_covered.double().mean().item(),
    }


PRDC_KEYS = ("precision", "recall", "density", "coverage")


def prdc_per_class(real_feats: torch.Tensor, real_labels: torch.Tensor, fake_feats: torch.Tensor,
                   fake_labels: torch.Tensor, k: int = 3) -> dict:
    """PRDC as the paper computes it: per attacked class, between that class's attack images and that
    class's real images, then averaged over the classes (a fake of class c counts only where it looks
    like a real image of c, not like any private image).

    Returns {"precision", "recall", "density", "coverage"} (class means; None when no class could be
    scored), "per_class" {class id: its four values}, and "skipped_classes": the attacked classes with
    k or fewer attack or real images, for which the k-NN radii are undefined."""
    if real_labels.numel() != real_feats.shape[0] or fake_labels.numel() != fake_feats.shape[0]:
        raise ValueError(f"labels must have one entry per feature row: real {real_labels.numel()} vs "
                         f"{real_feats.shape[0]}, fake {fake_labels.numel()} vs {fake_feats.shape[0]}")
    per_class, skipped = {}, []
    for c in sorted(fake_labels.unique().tolist()):
        real, fake = real_feats[real_labels == c], fake_feats[fake_labels == c]
        if real.shape[0] <= k or fake.shape[0] <= k:
            skipped.append(int(c))
            continue
        per_class[int(c)] = prdc(real, fake, k=k)
    means = {key: (sum(v[key] for v in per_class.values()) / len(per_class) if per_class else None)
             for key in PRDC_KEYS}
    return {**means, "per_class": per_class, "skipped_classes": skipped}
