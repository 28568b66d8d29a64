"""AuditConfig: the budgets of an audit, built from the shipped stage configs plus overrides (as the
experiment's), so every recipe stays in its one stage YAML. The data section of every stage is replaced
by the user's folders (folders.audit_data)."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Optional

from pydantic import Field, field_validator

from ..attacks.config import ATTACKS
from ..config import Strict, load_config
from ..experiment.config import StageRef
from ..metrics import EvaluateConfig

DEFAULT_AUDIT_CONFIG = "audit-small"


class NlsSettings(Strict):
    """--compare nls: the model's architecture retrained with the `retrain` recipe twice, alpha 0 (the
    same-recipe baseline) and this negative alpha, reached after `warmup` epochs at 0 and a `ramp`."""

    alpha: float = Field(-0.05, lt=0.0)
    warmup: int = Field(3, ge=0)
    ramp: int = Field(2, ge=0)


class AuditReportConfig(Strict):
    images_per_class: int = Field(4, ge=1, description="attack and real images per class in the grids")
    leak_classes: int = Field(3, ge=1, description="classes shown as leaking most")


class AuditConfig(Strict):
    prior: StageRef
    eval_model: StageRef
    retrain: StageRef
    nls: NlsSettings = Field(default_factory=NlsSettings)
    attacks: dict[str, StageRef]
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    suite_augmentation: dict[str, Any] = Field(default_factory=dict, description="--attack-suite: overrides of the "
                                               "augmentation section (surrogates' budget, e.g. steps) of every suite "
                                               "attack that uses model augmentation (audit/suite.py)")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    train_per_class: Optional[int] = Field(None, ge=2, description="private images per class used (seeded)")
    data_seed: int = 42
    prior_max_size: int = Field(32, ge=8, description="the prior's side: largest b * 2**k (b in 4..7) up to "
                                "min(model image size, this); the attack resizes to the model's size")
    num_threads: Optional[int] = Field(1, ge=1)
    report: AuditReportConfig = Field(default_factory=AuditReportConfig)

    @field_validator("attacks")
    @classmethod
    def _attacks(cls, v):
        bad = sorted(set(v) - set(ATTACKS))
        if bad or not v:
            raise ValueError(f"attacks must map attack names ({', '.join(ATTACKS)}) to stage configs; got {sorted(v)}")
        return v


def load_audit_config(name_or_path: str | None = None,
                      overrides: Mapping[str, Any] = MappingProxyType({})) -> AuditConfig:
    return load_config(AuditConfig, name_or_path or DEFAULT_AUDIT_CONFIG, overrides)
