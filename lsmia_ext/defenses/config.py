"""DefenseConfig: the `defense` section of a TrainConfig (default: no defense)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field

from ..config import Strict
from .base import DEFENSES


class DefenseConfig(Strict):
    """kind: a registered defense (defenses.DEFENSES: none | mid | bido), each as its authors' code trains it
    (see defenses/mid.py, bido.py).

    mid: beta (weight of the KL term, authors' scale 0.001-0.25), bottleneck_dim (null = half the feature
    width, as the authors'; std = softplus(raw - 5) at the bottleneck).
    bido: + lambda_x * nHSIC(X, h) - lambda_y * nHSIC(Y, h) per hidden block h (authors' scale: (0.05, 0.5)
    on CelebA, (0.1, 2) with VMI); sigma: Gaussian kernel width (variance 2 sigma^2 d; authors: 5);
    label_kernel: linear (authors' default) or gaussian; hidden_layers: also the pooled conv stages besides
    the penultimate features (false = features only).
    """

    kind: Annotated[str, AfterValidator(DEFENSES.check)] = "none"
    beta: float = Field(default=0.01, ge=0.0)
    bottleneck_dim: Optional[int] = Field(default=None, ge=1)
    lambda_x: float = Field(default=0.05, ge=0.0)
    lambda_y: float = Field(default=0.5, ge=0.0)
    sigma: float = Field(default=5.0, gt=0.0)
    label_kernel: Literal["linear", "gaussian"] = "linear"
    hidden_layers: bool = True
