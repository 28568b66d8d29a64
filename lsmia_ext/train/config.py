"""TrainConfig: one classifier training run (target or evaluation model), validated from YAML."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..config import Strict, check_betas, config_hash
from ..data import AugmentConfig, DataConfig
from ..defenses.base import DEFENSES
from ..defenses.config import DefenseConfig

# Fields that change how fast a run goes but not what it computes; a run may resume with other values.
RUNTIME_FIELDS = {"device", "num_threads", "num_workers"}


class ModelConfig(Strict):
    """name: a registered model (lsmia_ext.models.MODELS); pretrained: local state dict file;
    channels_last: NHWC memory format (faster for torchvision nets on GPU and on CPU with oneDNN)."""

    name: str = "small_cnn"
    pretrained: Optional[Path] = None
    channels_last: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, v):
        from ..models import MODELS

        return MODELS.check(v)


class LossConfig(Strict):
    """Label smoothing factor alpha (<= 1; negative = negative LS). Negative alpha is reached after `warmup`
    epochs at 0 and a linear `ramp`; alpha >= 0 applies from the first epoch (lsmia_ext.AlphaSchedule, as
    in the authors' code), so one recipe with warmup/ramp set serves every alpha."""

    alpha: float = Field(default=0.0, le=1.0, allow_inf_nan=False)  # the one check of a configured alpha
    warmup: int = Field(default=0, ge=0)
    ramp: int = Field(default=0, ge=0)


class OptimConfig(Strict):
    name: Literal["adam", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    betas: tuple[float, float] = (0.9, 0.999)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v):
        return check_betas(v, "optim.betas")


class ScheduleConfig(Strict):
    """Learning-rate schedule stepped once per epoch: none, multistep (x gamma at each milestone epoch) or
    cosine (to 0 over all epochs)."""

    name: Literal["none", "multistep", "cosine"] = "none"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(default=0.1, gt=0.0, le=1.0)


class TrainConfig(Strict):
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    defense: DefenseConfig = Field(default_factory=DefenseConfig)
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=2)
    eval_batch_size: int = Field(default=1000, ge=1)
    bf16: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 42
    num_threads: Optional[int] = Field(default=None, ge=1)
    num_workers: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self):
        if self.loss.alpha < 0 and self.loss.warmup + self.loss.ramp > self.epochs:
            raise ValueError(f"loss.warmup + loss.ramp = {self.loss.warmup + self.loss.ramp} exceeds epochs = "
                             f"{self.epochs}: alpha = {self.loss.alpha} would never be reached")
        bad = [m for m in self.schedule.milestones if not 0 < m < self.epochs]
        if bad:
            raise ValueError(f"schedule.milestones {bad} must lie in 1..{self.epochs - 1} (epochs = {self.epochs})")
        if self.schedule.milestones != sorted(set(self.schedule.milestones)):
            raise ValueError(f"schedule.milestones must be strictly increasing, got {self.schedule.milestones}")
        DEFENSES.get(self.defense.kind).check_config(self, self._fresh_model)  # what a defense cannot train with
        return self

    def _fresh_model(self):
        """An untrained model of the configured architecture (layer counts do not depend on the data)."""
        from ..models import build_model

        return build_model(self.model.name, 2, 3, 299)

    def run_hash(self) -> str:
        """Hash of everything that determines the trained weights (not device, threads or workers)."""
        exclude = RUNTIME_FIELDS | ({"defense"} if self.defense.kind == "none" else set())  # keeps old run hashes
        data = self.model_dump(mode="json", exclude=exclude)
        data["data"] = self.data.training_view()
        return config_hash(data)
