"""DefenseConfig: the `defense` section of a TrainConfig (default: no defense)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, model_serializer, model_validator

from ..config import Strict
from .base import DEFENSES

# Fields added with TL-DMI, random erasing and Trap-MID: dumped only when they differ from their defaults, so
# that the configs (and stage hashes) of every defense that existed before them stay as they were.
NEWER_FIELDS = ("freeze_layers", "pretrain_epochs", "pretrain_lr", "erase_scale", "erase_p", "erase_value",
                "trap_alpha", "trap_beta", "trap_step")


class DefenseConfig(Strict):
    """kind: a registered defense (defenses.DEFENSES: none | mid | bido | tl_dmi | random_erasing | trap_mid),
    each as its authors' code trains it (see the module docstrings in lsmia_ext/defenses/).

    mid: beta (weight of the KL term, authors' scale 0.001-0.25), bottleneck_dim (null = half the feature
    width, as the authors'; std = softplus(raw - 5) at the bottleneck).
    bido: + lambda_x * nHSIC(X, h) - lambda_y * nHSIC(Y, h) per hidden block h (authors' scale: (0.05, 0.5)
    on CelebA, (0.1, 2) with VMI); sigma: Gaussian kernel width (variance 2 sigma^2 d; authors: 5);
    label_kernel: linear (authors' default) or gaussian; hidden_layers: also the pooled conv stages besides
    the penultimate features (false = features only).
    tl_dmi: pretrain on the scenario's public classes for pretrain_epochs at pretrain_lr, then fine-tune on
    the private classes with the first freeze_layers layers (tl_dmi.py: the trunk's parametrised top-level
    blocks, in order) frozen; the dial is freeze_layers (0 .. the model's layer count).
    random_erasing: each training image, with probability erase_p, gets a square of erase_scale (area
    fraction range, authors: [0.1, 0.4]) filled with erase_value (0.5: the model's normalisation centre);
    the dial is the erased fraction (erase_scale) and erase_p.
    trap_mid: per-class random triggers blended into a copy of every training image with weight trap_alpha
    (authors: 0.02), labelled with the trigger's class; loss (1 - trap_beta) CE(clean) + trap_beta
    CE(triggered) (authors: 0.2); triggers take a signed-gradient step of trap_step per batch (authors: 0.01;
    0 = fixed triggers). The dials are trap_beta and trap_alpha.
    """

    kind: Annotated[str, AfterValidator(DEFENSES.check)] = "none"
    beta: float = Field(default=0.01, ge=0.0)
    bottleneck_dim: Optional[int] = Field(default=None, ge=1)
    lambda_x: float = Field(default=0.05, ge=0.0)
    lambda_y: float = Field(default=0.5, ge=0.0)
    sigma: float = Field(default=5.0, gt=0.0)
    label_kernel: Literal["linear", "gaussian"] = "linear"
    hidden_layers: bool = True
    freeze_layers: int = Field(default=2, ge=0)
    pretrain_epochs: int = Field(default=3, ge=1)
    pretrain_lr: float = Field(default=0.002, gt=0.0)
    erase_scale: tuple[float, float] = (0.1, 0.4)
    erase_p: float = Field(default=1.0, gt=0.0, le=1.0)
    erase_value: float = Field(default=0.5, ge=0.0, le=1.0)
    trap_alpha: float = Field(default=0.02, gt=0.0, lt=1.0)
    trap_beta: float = Field(default=0.2, gt=0.0, lt=1.0)
    trap_step: float = Field(default=0.01, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _scale(self):
        lo, hi = self.erase_scale
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"defense.erase_scale must satisfy 0 < low <= high < 1 (area fractions of the image), "
                             f"got {list(self.erase_scale)}")
        return self

    @model_serializer(mode="wrap")
    def _omit_newer_defaults(self, handler):
        data = handler(self)
        for name in NEWER_FIELDS:
            default = type(self).model_fields[name].default
            if name in data and (data[name] == default or (isinstance(default, tuple) and
                                                            tuple(data[name]) == default)):
                del data[name]
        return data
