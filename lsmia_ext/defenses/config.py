"""DefenseConfig: the `defense` section of a TrainConfig (default: no defense)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from ..config import Strict


class DefenseConfig(Strict):
    """kind: none | mid (variational information bottleneck, weight `beta`, `bottleneck_dim` units) |
    bido (HSIC penalties: + lambda_x * sum_l HSIC(X, H_l) - lambda_y * sum_l HSIC(H_l, Y)).

    sigma: Gaussian kernel bandwidth for BiDO; null = median heuristic per batch and per variable
    (median pairwise distance), which adapts to layers of very different scales without tuning.
    hidden_layers: BiDO also penalises the outputs of the trunk's pooling stages (cheap: read by forward
    hooks during the normal forward pass) besides the penultimate features; false = features only.
    """

    kind: Literal["none", "mid", "bido"] = "none"
    beta: float = Field(default=0.01, ge=0.0)
    bottleneck_dim: int = Field(default=64, ge=1)
    lambda_x: float = Field(default=0.05, ge=0.0)
    lambda_y: float = Field(default=0.5, ge=0.0)
    sigma: Optional[float] = Field(default=None, gt=0.0)
    hidden_layers: bool = True
