"""The attacks an audit runs: the config's named attacks (`--attacks ppa,gmi`), or an attack suite
(`--attack-suite adaptive`, lsmia_ext/attacks/suite.py: PPA as shipped and the variants that adapt to a
defense which saturates the softmax), whose verdict is the worst case (highest Acc@1) over its attacks.

A suite's attacks are override sets of attack-ppa; in an audit they apply on top of the audit's own PPA
budget (cfg.attacks["ppa"]). The suite's budget keys (attacks.suite.STRONG_BUDGET) are read as factors of
attack-ppa's values, not as absolute numbers: the stronger budget of A3 is 2x the audit's optimisation steps
and 4x its candidates, as it is 2x / 4x attack-ppa's in the study (an audit's budgets are smaller).
Each augmented attack distils its own surrogates in its attack directory (surrogates/), with the budget of
the audit config's suite_augmentation (overrides of the augmentation section).
"""
from __future__ import annotations

from typing import Optional

from ..errors import UserInputError
from .uncertainty import interval_text


def _at(dump: dict, dotted: str):
    for part in dotted.split("."):
        dump = dump[part]
    return dump


def suite_configs(cfg, suite: str) -> dict:
    """{attack name: AttackConfig} of the named suite on top of the audit's PPA budget."""
    from ..attacks import AttackConfig, load_attack_config
    from ..attacks.suite import BASE_CONFIG, STRONG_BUDGET, suite_overrides
    from ..config import flatten_overrides

    if "ppa" not in cfg.attacks:
        raise UserInputError(f"--attack-suite {suite}: the audit config has no 'ppa' attack to build the suite on "
                             f"(its attacks: {', '.join(cfg.attacks)})")
    ppa = cfg.attacks["ppa"]
    shipped = load_attack_config(BASE_CONFIG).model_dump(mode="json")
    audit = ppa.load(AttackConfig).model_dump(mode="json")
    out = {}
    for name, overrides in suite_overrides(suite).items():
        flat = flatten_overrides(overrides)
        for key in STRONG_BUDGET.keys() & flat.keys():
            flat[key] = max(1, round(_at(audit, key) * flat[key] / _at(shipped, key)))
        if any(key.split(".")[0] == "augmentation" for key in flat):
            flat.update({f"augmentation.{k}": v for k, v in flatten_overrides(cfg.suite_augmentation).items()})
        out[name] = ppa.load(AttackConfig, extra=flat)
    return out


def attack_configs(cfg, attacks: Optional[tuple[str, ...]], suite: Optional[str]) -> dict:
    """{attack name: AttackConfig} the audit runs, in order; the first is the headline's."""
    from ..attacks import AttackConfig

    if suite is not None:
        if attacks is not None:
            raise UserInputError(f"--attacks {','.join(attacks)} and --attack-suite {suite}: give one (the suite "
                                 "runs its own attacks)")
        return suite_configs(cfg, suite)
    attacks = ("ppa",) if attacks is None else attacks
    unknown = [a for a in attacks if a not in cfg.attacks]
    if unknown or not attacks:
        raise UserInputError(f"--attacks {','.join(attacks)}: allowed {', '.join(cfg.attacks)}")
    return {name: cfg.attacks[name].load(AttackConfig) for name in attacks}


def worst_cases(rows: list[dict]) -> dict:
    """Per audited model (row key): the attack with the highest Acc@1 and every attack's Acc@1."""
    out: dict[str, dict] = {}
    for r in rows:
        w = out.setdefault(r["key"], {"model": r["model"], "per_attack": {}})
        w["per_attack"][r["attack"]] = r["acc1"]
        if "attack" not in w or r["acc1"] > w["acc1"]:
            w.update({k: r.get(k) for k in ("attack", "acc1", "acc1_ci_low", "acc1_ci_high")})
    return out


def per_attack_text(worst: dict) -> str:
    return ", ".join(f"{name} {100 * acc:.1f} %" for name, acc in worst["per_attack"].items())


def worst_case_sentence(results: dict) -> str:
    """The summary's sentence on the suite's worst case against the user's model."""
    w = results["worst_case"]["model"]
    return (f"Against the {results['attack_suite']} attack suite (lsmia_ext/attacks/suite.py: PPA as shipped, then "
            "logit-margin loss and selections, surrogate models distilled from yours on public images and prior "
            f"samples, a stronger budget) the worst case is {w['attack']}: attack Acc@1 {100 * w['acc1']:.1f} %"
            f"{interval_text(w)}. Per attack: {per_attack_text(w)}. Read the worst case as your model's leakage: an "
            "attacker picks the attack that works best.")
