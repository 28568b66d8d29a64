"""Identity losses: how strongly the target's logits point at the attacked class, per row.

Every function returns one loss per row (B,); the caller reduces. Rows are independent, so a
candidate's gradient never depends on which other candidates share its batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import Registry

IDENTITY_LOSSES: Registry = Registry("identity loss")  # name -> loss(logits, labels) -> (B,)
POINCARE_EPS = 1e-4  # PPA's offset of the one-hot target: keeps it strictly inside the unit ball


def _check(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"identity loss expects logits of shape (B, K); got {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"identity loss expects labels of shape ({logits.shape[0]},); got {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}); got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")


@IDENTITY_LOSSES.register("poincare")
def poincare_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Hyperbolic distance between the L1-normalised logits and the (shrunk) one-hot target (PPA).

    Unlike CE it keeps pulling after the softmax saturates, because the L1-normalised logits only
    reach the target when all other logits vanish.
    """
    _check(logits, labels)
    # float64: 1 - ||v||^2 = 2e-4 - 1e-8 loses 3 digits to cancellation in float32 (cheap: B x K).
    out_dtype = torch.promote_types(logits.dtype, torch.float32)
    logits = logits.double()
    u = logits / logits.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
    v = (F.one_hot(labels, logits.shape[1]).double() - POINCARE_EPS).clamp(0.0, 1.0)
    num = 2 * (u - v).square().sum(dim=1)
    # ||u||_2 <= ||u||_1 = 1: the first factor reaches 0 only for a logit vector with one non-zero entry.
    den = (1 - u.square().sum(dim=1)).clamp_min(1e-12) * (1 - v.square().sum(dim=1))
    return torch.acosh(1 + num / den).to(out_dtype)


@IDENTITY_LOSSES.register("ce")
def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    _check(logits, labels)
    return F.cross_entropy(logits.float(), labels, reduction="none")


@IDENTITY_LOSSES.register("max_margin")
def max_margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-(z_y - max_{k != y} z_k), LOMMA's logit margin: no softmax, so no saturation."""
    _check(logits, labels)
    logits = logits.float()
    if logits.shape[1] < 2:
        raise ValueError("max_margin loss needs at least 2 classes")
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return others.max(dim=1).values - own


def identity_loss(name: str):
    """The per-row loss function called `name` (one of IDENTITY_LOSSES)."""
    return IDENTITY_LOSSES.get(name)


def ensemble_members(cfg, target, surrogates) -> list:
    """The models an attack's loss and selections average over: the target, then its surrogates (LOMMA's
    model augmentation); the surrogates alone when cfg.augmentation.include_target is False (run_attack
    always has surrogates then: given, or distilled into the run)."""
    if cfg.augmentation is not None and not cfg.augmentation.include_target:
        if not surrogates:
            raise ValueError("augmentation.include_target is false but no surrogates were given: the attack "
                             "would have no model to attack")
        return list(surrogates)
    return [target, *surrogates]


def ensemble_loss(loss_fn, members, view: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) mean over the ensemble members (the target, then its surrogates: LOMMA's model augmentation) of
    each member's per-row loss on the same view; one member gives its own loss unchanged."""
    if len(members) == 1:
        return loss_fn(members[0](view), labels)
    return torch.stack([loss_fn(m(view), labels) for m in members]).mean(dim=0)
