"""ExperimentConfig: the label smoothing study, built from the shipped stage configs plus overrides.

Each stage (prior, evaluation model, target recipe, attack) names a stage config (shipped name or YAML
path) and a `set` mapping of overrides, so the stage YAML files stay the single source of each recipe
and the experiment file only records where its budget differs. The experiment's `data` section
replaces every stage's data, so all stages see the same scenario and split.

`targets` is generic: every entry is {name, alpha, set}; `set` holds TrainConfig overrides on top of
the shared target recipe, so other defences (MID, BiDO, ...) plug in as entries with their own fields.
Of the data, an entry may lower only data.train_per_class (stages.entry_data: a prefix of the same split).
"""
from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional, Union

from pydantic import Field, PrivateAttr, field_validator, model_serializer, model_validator

from ..config import (ConfigError, Strict, apply_overrides, config_hash, flatten_overrides, load_config,
                      merge_overrides, read_yaml, resolve_config_path, validate)
from ..data import DataConfig
from ..metrics import EvaluateConfig
from .matched import DROPS, MAX_GAP, NOT_A_DEFENSE
from .stages import ResolvedStages, resolve_stages
from .tradeoff import defense_of

DEFAULT_CONFIG = "experiment-fmnist"

# Reduced budgets for tests and smoke runs (about 2 minutes on 2 cores on top of experiment-fmnist;
# seconds on top of experiment-digits), applied as overrides after the config file.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "data.train_per_class": 300,
        "prior.set.train.steps": 30,
        "prior.set.fid.num_samples": 100,
        "prior.set.fid.extractor_epochs": 1,
        "eval_model.set.epochs": 2,
        "target.set.epochs": 2,
        "target.set.loss.warmup": 1,
        "target.set.loss.ramp": 0,
        "attack.set.initial.candidates": 60,
        "attack.set.initial.keep": 10,
        "attack.set.optim.steps": 8,
        "attack.set.final.keep": 4,
        "attack.set.final.transforms": 8,
        "evaluate.max_reference": 300,
        "evaluate.kes.steps": 30,
    },
}


class StageRef(Strict):
    """A stage config (shipped name or YAML path) and overrides on top of it."""

    config: str
    set: dict[str, Any] = Field(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _exists(cls, v):
        resolve_config_path(v)  # raises ConfigError listing the shipped configs
        return v

    def load(self, model, data: Optional[DataConfig] = None, extra: Mapping[str, Any] = MappingProxyType({})):
        """The resolved stage config: the stage file, then `set`, then `extra` (a mapping of dotted keys);
        `data` replaces the stage file's data section."""
        overrides = merge_overrides(flatten_overrides(self.set), extra)
        raw = apply_overrides(read_yaml(resolve_config_path(self.config)), overrides)
        if data is not None:
            raw["data"] = data.model_dump(mode="json")
        return validate(model, raw, source=f"{self.config} (+ experiment overrides)")


class TargetEntry(Strict):
    """One target recipe of the study: a name (row label, directory name), its alpha, extra overrides.

    `family` names the defense family the entry belongs to in the trade-off and the matched comparison
    (tradeoff.defense_of), overriding the one inferred from set.defense.kind and alpha; plain hard-label
    entries (alpha 0, no defense) with a family are control families ("train less (epochs)", "narrower
    model"): models that are only less accurate, against which negative LS is compared at equal accuracy.
    `added_after_attacks` marks a grid point added after attack results were seen: the matched
    comparison is then reported with and without such points. Neither field changes a stage.

    `attack_set` overrides the seed's attack config for this entry only; with {target_sampling: true} a MID
    target is attacked with its bottleneck sampling on, and the row's utility (val_acc, test_acc, ece) is
    scored the same way, as the MID authors run their targets (the noise-free values stay in val_acc_mean,
    test_acc_mean, ece_mean). `target_of` names an earlier entry whose trained targets this entry attacks
    instead of training its own (same alpha and set required): one training, two ways to attack it."""

    name: str
    alpha: float  # checked once, as the target's loss.alpha (the stages resolve when this config loads)
    set: dict[str, Any] = Field(default_factory=dict)
    family: Optional[str] = None
    added_after_attacks: bool = False
    attack_set: dict[str, Any] = Field(default_factory=dict)
    target_of: Optional[str] = None

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", v):
            raise ValueError(f"target name {v!r} must be letters, digits, '_', '.', '+' or '-' "
                             "(it names a directory)")
        return v

    @field_validator("family")
    @classmethod
    def _family(cls, v):
        if v is not None and (not v.strip() or v in NOT_A_DEFENSE):
            raise ValueError(f"family {v!r} must be a non-empty label other than {sorted(NOT_A_DEFENSE)} "
                             "(leave it out for the undefended target and positive LS)")
        return v

    @field_validator("set")
    @classmethod
    def _set(cls, v):
        flat = flatten_overrides(v)
        if "loss.alpha" in flat:
            raise ValueError("set the target's alpha with the entry's `alpha`, not with set: loss.alpha")
        data_keys = sorted(k for k in flat if (k == "data" or k.startswith("data.")) and k != "data.train_per_class")
        if data_keys:
            raise ValueError(f"a target entry's set may change only data.train_per_class of the data (fewer "
                             f"training images per class, stages.entry_data), got {data_keys}: the experiment's "
                             "`data` is every stage's")
        return v


class ReportConfig(Strict):
    images_per_class: int = Field(4, ge=1, description="attack and real images per class in each grid")
    # costs in test accuracy (fractions below the undefended target, per seed) at which defenses are
    # compared at matched utility (experiment/matched.py); used only when the study has defense families
    matched_drops: list[float] = Field(default_factory=lambda: list(DROPS))
    # a family's curve is read only on a measured point or between two measured points of the seed at
    # most this far apart in utility (a fraction: 0.015 = 1.5 points of accuracy); elsewhere "not measured"
    max_gap: float = Field(MAX_GAP, gt=0, lt=1)
    # costs added after the matched table's results were read (e.g. where the controls sit): read the
    # same way but in a table of their own, with its own Holm adjustment, labelled post hoc in the report
    post_hoc_drops: list[float] = Field(default_factory=list)
    # The primary comparisons (experiment/primary.py): every other defense family against primary_reference
    # at this one cost (a fraction of validation accuracy below the undefended target of the same seed,
    # e.g. 0.02), Holm-adjusted over those comparisons only; the matched table then is exploratory.
    # None: no primary comparison (and neither field appears in the config's dump).
    primary_cost: Optional[float] = Field(None, gt=0, lt=1)
    primary_reference: str = "negative LS"

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Without a primary cost the dump is what it was before these fields existed."""
        data = handler(self)
        if data.get("primary_cost") is None:
            data.pop("primary_cost", None)
            data.pop("primary_reference", None)
        return data

    @field_validator("matched_drops")
    @classmethod
    def _drops(cls, v):
        if not v or any(not 0 <= d < 1 for d in v):
            raise ValueError(f"report.matched_drops must be a non-empty list of costs in [0, 1), got {v}")
        return v

    @field_validator("post_hoc_drops")
    @classmethod
    def _post_hoc_drops(cls, v, info):
        if any(not 0 <= d < 1 for d in v):
            raise ValueError(f"report.post_hoc_drops must be costs in [0, 1), got {v}")
        both = sorted(set(v) & set(info.data.get("matched_drops") or []))
        if both:
            raise ValueError(f"report.post_hoc_drops repeats costs of report.matched_drops: {both}")
        return v


class ExperimentConfig(Strict):
    data: DataConfig
    prior: StageRef
    eval_model: StageRef
    target: StageRef
    targets: list[TargetEntry]
    attack: StageRef
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    seeds: list[int] = Field(default_factory=lambda: [0])
    num_threads: Optional[int] = Field(2, ge=1, description="torch threads for the whole run (None: torch's default)")
    report: ReportConfig = Field(default_factory=ReportConfig)
    # Why the budgets are what they are (fixed before any per-alpha result was seen); printed in the report.
    rationale: str = ""
    # Run directory of another finished study (its results.json) whose paired claims the report shows
    # as the ablation "prior without the private domain"; it changes no stage of this study.
    ablation: Optional[str] = None
    # Attack suite (experiment/adaptive.py): every target is attacked by every attack of the suite, a
    # shipped suite's name (lsmia_ext/attacks/suite.py, e.g. "adaptive"), a list of that suite's attack
    # names (e.g. [A0, A3]) or a mapping {attack name: overrides of the attack recipe}; the study's primary
    # endpoint is then each target's worst case (highest attack Acc@1) over the suite. None: one attack.
    attack_suite: Optional[Union[str, list[str], dict[str, dict[str, Any]]]] = None
    # A second judge: another evaluation model (another architecture and seed) that scores every attack
    # beside the first, which stays the primary judge. None: one judge.
    eval_model2: Optional[StageRef] = None

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """attack_suite and eval_model2 appear only when set: the dumps (and the shards' records) of
        studies without them stay as they were."""
        data = handler(self)
        for key in ("attack_suite", "eval_model2"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @field_validator("attack_suite")
    @classmethod
    def _attack_suite(cls, v):
        if v is not None:
            from ..attacks.suite import suite_overrides

            suite_overrides(v)  # unknown suite, bad attack name or empty suite: one line
        return v

    def attack_overrides(self) -> dict[str, dict[str, Any]]:
        """{attack name: dotted overrides of the attack recipe} of the suite, in its order; {} without one."""
        if self.attack_suite is None:
            return {}
        from ..attacks.suite import suite_overrides

        return {name: flatten_overrides(o) for name, o in suite_overrides(self.attack_suite).items()}

    @field_validator("targets")
    @classmethod
    def _targets(cls, v):
        if not v:
            raise ValueError("targets is empty: list at least one {name, alpha, set} entry")
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"target names must be distinct; repeated: {dup}")
        seen: dict[str, TargetEntry] = {}
        for t in v:
            if t.target_of is not None:
                src = seen.get(t.target_of)
                if src is None or src.target_of is not None:
                    raise ValueError(f"target {t.name!r}: target_of {t.target_of!r} must name an earlier entry "
                                     "that trains its own targets")
                if (t.alpha, flatten_overrides(t.set)) != (src.alpha, flatten_overrides(src.set)):
                    raise ValueError(f"target {t.name!r} attacks the targets of {src.name!r} (target_of), so its "
                                     f"alpha and set must equal that entry's ({src.alpha}, {src.set})")
            seen[t.name] = t
        return v

    @model_validator(mode="after")
    def _primary_reference(self):
        """A primary comparison needs its reference family among the targets (tradeoff.defense_of)."""
        ref = self.report.primary_reference
        if self.report.primary_cost is not None and ref not in {defense_of(t) for t in self.targets}:
            known = sorted({defense_of(t) for t in self.targets} - set(NOT_A_DEFENSE))
            raise ValueError(f"report.primary_reference {ref!r} is no family of the targets; allowed: {known}")
        return self

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if not v:
            raise ValueError("seeds is empty: give at least one seed (e.g. [0])")
        if len(set(v)) != len(v) or any(s < 0 for s in v):
            raise ValueError(f"seeds must be distinct integers >= 0, got {v}")
        return v

    @field_validator("ablation")
    @classmethod
    def _ablation(cls, v):
        if v is not None and not (Path(v) / "results.json").is_file():
            raise ValueError(f"ablation {v!r} holds no results.json: give the run directory of a finished "
                             "`lsmia experiment`")
        return v

    _stages: Optional[tuple[str, ResolvedStages]] = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _stages_resolve(self):
        """Loads every stage config now, so a bad override fails here, not after an hour of training."""
        self.stages  # noqa: B018 -- resolved and kept
        return self

    @property
    def stages(self) -> ResolvedStages:
        """Every stage config, resolved once per content of this config (a changed copy resolves anew)."""
        key = config_hash(self)
        if self._stages is None or self._stages[0] != key:
            self._stages = (key, resolve_stages(self))
        return self._stages[1]


def load_experiment_config(name_or_path: str | Path | None = None, preset: str | None = None,
                           seeds: int | None = None, overrides: Mapping[str, Any] = MappingProxyType({}),
                           ablation: str | Path | None = None) -> ExperimentConfig:
    """The config file (default experiment-fmnist), then the preset, then --seeds N, then the overrides
    (a mapping of dotted keys), then --ablation DIR."""
    layers: list[Mapping[str, Any]] = []
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; allowed: {', '.join(sorted(PRESETS))}")
        layers.append(PRESETS[preset])
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {seeds}")
        layers.append({"seeds": list(range(seeds))})
    layers.append(overrides)
    if ablation is not None:
        layers.append({"ablation": str(ablation)})
    return load_config(ExperimentConfig, name_or_path or DEFAULT_CONFIG, merge_overrides(*layers))
