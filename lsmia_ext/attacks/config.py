"""AttackConfig: every knob of PPA, GMI and MI-Face, validated (Strict: unknown keys are errors).

Sections: `initial` / `optim` / `final` are PPA's three stages; `optim` is shared by all three attacks
(steps, learning rate, betas, identity loss, crop of each step); `gmi` and `miface` hold what only
those attacks use and are accepted only for their attack. The adaptive options (issue 28):
`selection_score` (PPA's selections by softmax confidence or logit margin) and `augmentation` (surrogates
distilled from the target, LOMMA; attacks/surrogates.py), both left out of the dump at their defaults. The shipped YAML files
(lsmia_ext/configs/attack-*.yaml) document the values. Allowed attack and identity loss names are
the keys of the ATTACKS and IDENTITY_LOSSES registries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Literal, Optional, get_args

from pydantic import AfterValidator, Field, field_validator, model_serializer, model_validator

from ..config import Strict, check_betas, load_config
from ..models.registry import MODELS
from ..registry import Registry
from .identity import IDENTITY_LOSSES


@dataclass(frozen=True)
class Attack:
    """A registered attack: attack_batch(cfg, target, generator=, classes=, rng=, device=, discriminator=,
    [pool=, pool_conf=]) -> batch result dict; needs_prior: whether it searches a generator's latents."""

    attack_batch: Callable[..., dict]
    needs_prior: bool
    # Whether its identity loss can be taken over the target and surrogates (model augmentation): "" if
    # so, else why not (the one-line refusal of config validation).
    no_augmentation: str = ""


ATTACKS: Registry[Attack] = Registry("attack")  # filled by ppa.py, gmi.py, miface.py

# What RUN_DIR/results.pt holds (attacks/results.py). It is part of every attack's dump, hence of its run
# directory hash, its resume fingerprints and the experiment's attack stage hash, so an attack written
# under another version is rerun (experiment) or refused (a standalone run directory), never mixed.
# 1 (absent): `initial_images`, the final samples' images before optimisation.
# 2: `initial_selection_images` / `_labels`, every candidate the initial selection kept.
RESULTS_VERSION = 2


def _check_range(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    a, b = pair
    if not (low < a <= b <= high):
        raise ValueError(f"{name} must be (a, b) with {low} < a <= b <= {high}; got {pair}")


SelectionScore = Literal["confidence", "logit_margin"]
SELECTION_SCORES: tuple[str, ...] = get_args(SelectionScore)
# What surrogates may be distilled on: images the attacker has. Anything else (a private split) is refused.
SURROGATE_SOURCES = ("public", "prior")


class AugmentationConfig(Strict):
    """Model augmentation (LOMMA, Nguyen et al. CVPR 2023): surrogate classifiers distilled from the
    target's soft outputs on attacker-side images; the attack's identity loss and PPA's selections are
    averaged over the target and its surrogates. One surrogate per entry of `archs` (a repeated name gives
    another seed). Distillation and its choices: lsmia_ext/attacks/surrogates.py."""

    archs: list[Annotated[str, AfterValidator(MODELS.check)]] = Field(min_length=1)
    sources: list[str] = Field(default_factory=lambda: list(SURROGATE_SOURCES), min_length=1)
    prior_samples: int = Field(4000, ge=1)          # generator samples drawn when "prior" is a source
    prior_truncation_psi: float = Field(1.0, gt=0.0, le=1.0)
    steps: int = Field(400, ge=1)                   # SGD steps per surrogate
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    temperature: float = Field(1.0, gt=0.0)
    holdout: int = Field(1000, ge=1)                # attacker-side images per source kept out for agreement
    seed: int = 0
    # False: the ensemble is the surrogates alone, so the attack takes no gradient and no selection score of
    # the target (it reaches the target only through the distillation, on attacker-side images): an attacker
    # who knows a defense misleads gradient attacks (Trap-MID's trapdoors). Not part of the surrogates' own
    # stage hash (the same surrogates serve both ways), and left out of the dump when True (older hashes).
    include_target: bool = True

    @model_serializer(mode="wrap")
    def _dump(self, handler, info):
        data = handler(self)
        if data.get("include_target") is True:
            del data["include_target"]
        return data

    @field_validator("sources")
    @classmethod
    def _attacker_side(cls, v):
        bad = [s for s in v if s not in SURROGATE_SOURCES]
        if bad:
            raise ValueError(f"{bad} not allowed: surrogates are distilled on attacker-side "
                             f"images only (never a private image); allowed: {', '.join(SURROGATE_SOURCES)}")
        if len(set(v)) != len(v):
            raise ValueError(f"augmentation.sources must be distinct; got {v}")
        return v


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
    loss: Annotated[str, AfterValidator(IDENTITY_LOSSES.check)] = "poincare"
    crop_scale: tuple[float, float] = (0.9, 1.0)
    crop_ratio: tuple[float, float] = (1.0, 1.0)
    # Rows per forward/backward pass (None: all rows of a batch of classes at once). Only memory
    # changes: every row still gets exactly the gradient of its own loss, and one step updates all.
    micro_batch: Optional[int] = Field(None, ge=1)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v):
        return check_betas(v, "optim.betas")

    @model_validator(mode="after")
    def _ranges(self):
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


# Sections that belong to one attack (named after it): given for another attack they are an error,
# absent for their own attack they take their defaults.
OWN_SECTIONS = {"gmi": GMISettings, "miface": MIFaceSettings}


class AttackConfig(Strict):
    attack: Annotated[str, AfterValidator(ATTACKS.check)] = "ppa"
    seed: int = 0
    # Horizontal flips in scoring and final selection; off for data whose classes are not
    # mirror-symmetric (digits, clothes with text).
    hflip: bool = True
    # Classes attacked together; also the unit of resume and of sharding over torchrun ranks.
    classes_per_batch: int = Field(50, ge=1)
    # Images per forward pass when scoring without gradients (initial and final selection).
    score_batch_size: int = Field(256, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # MID targets (defenses/mid.py): sample their bottleneck z = mu + std * eps in every forward pass of
    # the attack, as the MID authors' code runs its targets (off: z = mu, the deterministic target). The
    # noise is seeded from (seed, batch). Targets without a bottleneck are unaffected; attack.json records
    # how many bottlenecks sampled.
    target_sampling: bool = False
    # What PPA's initial selection ranks candidates by and its final selection averages over random views:
    # the softmax confidence of the attacked class, or its logit margin z_y - max_{k != y} z_k (no softmax:
    # unchanged by any temperature, so a saturated softmax cannot flatten the ranking).
    selection_score: SelectionScore = "confidence"
    # Model augmentation (None: the target alone).
    augmentation: Optional[AugmentationConfig] = None
    initial: InitialSelection = InitialSelection()
    optim: Optimisation = Optimisation()
    final: FinalSelection = FinalSelection()
    gmi: Optional[GMISettings] = Field(None, validate_default=True)     # attack gmi only
    miface: Optional[MIFaceSettings] = Field(None, validate_default=True)  # attack miface only

    @field_validator(*OWN_SECTIONS)
    @classmethod
    def _own_section(cls, v, info):
        attack = info.data.get("attack")
        if attack is None:  # the attack name itself was refused; that error says enough
            return v
        if info.field_name != attack:
            if v is not None:
                raise ValueError(f"only attack {info.field_name!r} takes a {info.field_name} section; this config's "
                                 f"attack is {attack!r}")
            return None
        return OWN_SECTIONS[attack]() if v is None else v

    @model_validator(mode="after")
    def _final_fits(self):
        if self.attack == "ppa" and self.final.keep > self.initial.keep:
            raise ValueError(f"final.keep ({self.final.keep}) cannot exceed initial.keep ({self.initial.keep})")
        return self

    @field_validator("selection_score", "augmentation")
    @classmethod
    def _adaptive_option_fits(cls, v, info):
        attack = info.data.get("attack")
        if attack is None or v is None:  # a refused attack name says enough; None is always allowed
            return v
        if info.field_name == "selection_score" and v != "confidence" and attack != "ppa":
            raise ValueError(f"only attack 'ppa' has selections to rank; attack {attack!r} takes confidence (the "
                             "default)")
        why = ATTACKS.get(attack).no_augmentation if info.field_name == "augmentation" else ""
        if why:
            able = ", ".join(n for n in ATTACKS if not ATTACKS.get(n).no_augmentation)
            raise ValueError(f"attack {attack!r} cannot use model augmentation ({why}); attacks that can: {able}")
        return v

    @model_serializer(mode="wrap")
    def _dump(self, handler, info):
        """Every attack's section, the absent ones with their defaults: the dump feeds the stage hashes
        and the resume fingerprints, which were computed when every config carried every section.
        Plus results_version (what results.pt holds), and target_sampling, selection_score and augmentation
        only when they differ from their defaults (which keeps the hashes of attacks that existed before them)."""
        data = handler(self)
        for name, section in OWN_SECTIONS.items():
            if name in data and data[name] is None:
                data[name] = section().model_dump(mode=info.mode)
        for name in ("target_sampling", "selection_score", "augmentation"):
            if name in data and data[name] == type(self).model_fields[name].default:
                del data[name]
        data["results_version"] = RESULTS_VERSION
        return data

    def options_record(self) -> dict:
        """What attack.json / results.json record of the attack's adaptive options and budget."""
        aug = self.augmentation
        return {"selection_score": self.selection_score if self.attack == "ppa" else None,
                "loss": self.optim.loss,
                "augmentation": None if aug is None else {"archs": list(aug.archs), "sources": list(aug.sources),
                                                          **({} if aug.include_target else {"include_target": False})},
                "budget": {"candidates": self.initial.candidates if self.attack == "ppa" else None,
                           "keep": self.initial.keep if self.attack == "ppa" else None,
                           "steps": self.optim.steps}}

    @property
    def needs_prior(self) -> bool:
        return ATTACKS.get(self.attack).needs_prior


def load_attack_config(name_or_path: str, overrides=None) -> AttackConfig:
    """Named shipped config (e.g. 'attack-ppa') or a YAML path, with overrides {dotted key: value}."""
    return load_config(AttackConfig, name_or_path, overrides or {})
