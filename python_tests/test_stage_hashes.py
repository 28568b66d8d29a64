"""The stage hashes of the shipped experiment configs are pinned: existing run directories must keep being
reused, and a refactor that changed what a stage hashes would silently rerun (or, worse, reuse) stages.
The pinned values are the pre-data hashes (before the identity assignment's sha256 is mixed in).
Regenerate only for a deliberate change of a stage's meaning, and say so in the commit."""
import json
from pathlib import Path

import pytest

from lsmia_ext.experiment.config import load_experiment_config
from lsmia_ext.experiment.stages import attack_hash, evaluation_hash, resolve_stages

PINNED = json.loads((Path(__file__).parent / "stage_hashes.json").read_text())


def stage_hashes(name: str) -> dict:
    cfg = load_experiment_config(name)
    stages = resolve_stages(cfg)
    prior, eval_model = stages.prior.run_hash(), stages.eval_model.run_hash()
    hashes = {"prior": prior, "eval_model": eval_model}
    judge2 = stages.eval_model2.run_hash() if stages.eval_model2 is not None else None
    if judge2 is not None:
        hashes["eval_model2"] = judge2
    attacks = list(cfg.attack_overrides())
    for (entry, seed), target in stages.targets.items():
        t = target.run_hash()
        for attack in attacks or [None]:
            a = attack_hash(stages.attack_of(entry, seed, attack), t, prior)
            key = f"{entry}_seed{seed}" + ("" if attack is None else f"_{attack}")
            hashes[key] = [t, a, evaluation_hash(cfg.evaluate, a, eval_model, judge2)]
    return hashes


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_stage_hashes_unchanged(name):
    assert stage_hashes(name) == PINNED[name]
