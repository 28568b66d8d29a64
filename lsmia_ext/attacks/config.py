"""AttackConfig: every knob of PPA, GMI and MI-Face, validated (Strict: unknown keys are errors).

Sections: `initial` / `optim` / `final` are PPA's three stages; `optim` is shared by all three attacks
(steps, learning rate, betas, identity loss, crop of each step); `gmi` and `miface` hold what only
those attacks use. The shipped YAML files (lsmia_ext/configs/attack-*.yaml) document the values.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from ..config import Strict, load_config

ATTACKS = ("ppa", "gmi", "miface")
IDENTITY_LOSSES = ("poincare", "ce", "max_margin")


def _check_range(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    a, b = pair
    if not (low < a <= b <= high):
        raise ValueError(f"{name} must be (a, b) with {low} < a <= b <= {high}; got {pair}")


class InitialSelection(Strict):
    """PPA stage 1: score `candidates` latents from a fixed seed, keep the best `keep` per class."""

    candidates: int = Field(2000, ge=1)
    keep: int = Field(200, ge=1)
    truncation_psi: float = Field(0.5, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _keep_fits(self):
        if self.keep > self.candidates:
            raise ValueError(f"initial.keep ({self.keep}) cannot exceed initial.candidates ({self.candidates})")
        return self


class Optimisation(Strict):
    """The gradient stage of every attack: LatentAdam on the latents (or on the pixels for MI-Face)."""

    steps: int = Field(50, ge=0)
    lr: float = Field(0.005, gt=0.0)
    betas: tuple[float, float] = (0.1, 0.1)
    loss: Literal["poincare", "ce", "max_margin"] = "poincare"
    crop_scale: tuple[float, float] = (0.9, 1.0)
    crop_ratio: tuple[float, float] = (1.0, 1.0)
    # Rows per forward/backward pass (None: all rows of a batch of classes at once). Only memory
    # changes: every row still gets exactly the gradient of its own loss, and one step updates all.
    micro_batch: Optional[int] = Field(None, ge=1)

    @model_validator(mode="after")
    def _ranges(self):
        for b in self.betas:
            if not 0.0 <= b < 1.0:
                raise ValueError(f"optim.betas must both lie in [0, 1); got {self.betas}")
        _check_range("optim.crop_scale", self.crop_scale, 0.0, 1.0)
        _check_range("optim.crop_ratio", self.crop_ratio, 0.0, float("inf"))
        return self


class FinalSelection(Strict):
    """PPA stage 3: keep the `keep` most robust images per class (mean confidence over `transforms`
    random crops/flips). keep == initial.keep with transforms == 0 disables the stage."""

    keep: int = Field(50, ge=1)
    transforms: int = Field(100, ge=0)
    crop_scale: tuple[float, float] = (0.5, 0.9)
    crop_ratio: tuple[float, float] = (0.8, 1.2)

    @model_validator(mode="after")
    def _ranges(self):
        _check_range("final.crop_scale", self.crop_scale, 0.0, 1.0)
        _check_range("final.crop_ratio", self.crop_ratio, 0.0, float("inf"))
        return self


class GMISettings(Strict):
    """GMI (Zhang et al. 2020): random latents per class, identity loss + disc_weight * prior loss."""

    samples_per_class: int = Field(10, ge=1)
    latent: Literal["z", "w"] = "z"
    disc_weight: float = Field(0.01, ge=0.0)  # GMI: L_prior + 100 L_id, divided by 100
    truncation_psi: float = Field(1.0, gt=0.0, le=1.0)


class MIFaceSettings(Strict):
    """MI-Face (Fredrikson et al. 2015): descend on the pixels, penalised by TV and L2."""

    samples_per_class: int = Field(1, ge=1)
    init: Literal["grey", "noise"] = "grey"
    tv_weight: float = Field(0.05, ge=0.0)
    l2_weight: float = Field(0.001, ge=0.0)


class AttackConfig(Strict):
    attack: Literal["ppa", "gmi", "miface"] = "ppa"
    seed: int = 0
    # Horizontal flips in scoring and final selection; off for data whose classes are not
    # mirror-symmetric (digits, clothes with text).
    hflip: bool = True
    # Classes attacked together; also the unit of resume and of sharding over torchrun ranks.
    classes_per_batch: int = Field(50, ge=1)
    # Images per forward pass when scoring without gradients (initial and final selection).
    score_batch_size: int = Field(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    initial: InitialSelection = InitialSelection()
    optim: Optimisation = Optimisation()
    final: FinalSelection = FinalSelection()
    gmi: GMISettings = GMISettings()
    miface: MIFaceSettings = MIFaceSettings()

    @model_validator(mode="after")
    def _final_fits(self):
        if self.attack == "ppa" and self.final.keep > self.initial.keep:
            raise ValueError(f"final.keep ({self.final.keep}) cannot exceed initial.keep ({self.initial.keep})")
        return self

    @property
    def needs_prior(self) -> bool:
        return self.attack in ("ppa", "gmi")


def load_attack_config(name_or_path: str, overrides=None) -> AttackConfig:
    """Named shipped config (e.g. 'attack-ppa') or a YAML path, with overrides {dotted key: value}."""
    return load_config(AttackConfig, name_or_path, overrides or {})
