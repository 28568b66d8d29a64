"""The C1 study's data (issue 22): a target entry that lowers data.train_per_class trains on a prefix of the
experiment's training images (same validation and test images), pairs with the alpha-0 entry of the same size,
and experiment-fmnist-c1's finer identities (8 sub-classes per category, 4 private) on the real data."""
from __future__ import annotations

import pytest
import torch

from lsmia_ext.data import load_scenario
from lsmia_ext.data.sources import FASHION_MNIST_SYSTEM_DIR
from lsmia_ext.experiment import load_experiment_config
from lsmia_ext.experiment.stages import entry_data
from lsmia_ext.experiment.stats import find_claims

needs_fmnist = pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.exists(),
                                  reason="Fashion-MNIST not installed (make install runs apt-get install dataset-fashion-mnist)")


def _idx(scenario, split):
    return set(getattr(scenario._private, f"{split}_idx").tolist())


def _per_class(scenario, split):
    return torch.bincount(getattr(scenario, f"private_{split}").tensors()[1], minlength=scenario.num_classes).tolist()


def check_prefix(data, sizes):
    """Entries of smaller training sets: nested subsets of the experiment's training images, the same number
    per class, no validation split of their own, the experiment's test images; disjoint from its validation."""
    full = load_scenario(data)
    train, val, test = _idx(full, "train"), _idx(full, "val"), _idx(full, "test")
    assert val and not train & val and not train & test and not val & test
    previous = train
    for n in sorted(sizes, reverse=True):
        small_data = entry_data(data, {"data": {"train_per_class": n}})
        assert small_data.val_per_class is None and small_data.train_per_class == n
        small = load_scenario(small_data)
        mine = _idx(small, "train")
        assert mine < previous and not mine & (val | test) and _idx(small, "test") == test
        assert _per_class(small, "train") == [n] * small.num_classes and not len(small.private_val)
        previous = mine
    return full


def test_smaller_training_sets_are_prefixes_of_the_same_split_on_digits():
    cfg = load_experiment_config("experiment-digits", overrides={"data.train_per_class": 60, "data.val_per_class": 20})
    check_prefix(cfg.data, [40, 25])
    assert entry_data(cfg.data, {"epochs": 3}) is cfg.data  # no data key: the experiment's data itself


def test_smaller_size_entries_pair_with_the_hard_label_entry_of_their_size_and_train_on_it():
    small = {"data": {"train_per_class": 25}}
    targets = [{"name": "hard", "alpha": 0.0}, {"name": "pos", "alpha": 0.1},
               {"name": "hard25", "alpha": 0.0, "set": small}, {"name": "pos25", "alpha": 0.1, "set": small},
               {"name": "neg25", "alpha": -0.05, "set": {"data.train_per_class": 25}}]  # dotted = nested
    cfg = load_experiment_config("experiment-digits", overrides={"data.train_per_class": 60, "targets": targets})
    assert [(c["claim"], c["name"], c["baseline"]) for c in find_claims(cfg.targets)] == [
        ("C1.1", "pos", "hard"), ("C1.2", "pos25", "hard25"), ("C2", "neg25", "hard25")]
    sizes = {name: t.data.train_per_class for (name, _), t in cfg.stages.targets.items()}
    assert sizes == {"hard": 60, "pos": 60, "hard25": 25, "pos25": 25, "neg25": 25}
    assert cfg.stages.eval_model.data.train_per_class == 60


def test_c1_config_resolves_with_two_sizes_and_two_trends():
    from lsmia_ext.experiment.trend import trend_groups

    cfg = load_experiment_config("experiment-fmnist-c1")
    assert len(cfg.seeds) == 9 and cfg.data.identities.per_category == 6  # the pilot's k (rationale)
    assert sorted({t.data.train_per_class for t in cfg.stages.targets.values()}) == [25, 100]
    groups = trend_groups(cfg.targets)
    assert [g["alphas"] for g in groups] == [[0.0, 0.05, 0.1, 0.2]] * 2
    assert [g["label"] for g in groups] == ["experiment recipe", "data.train_per_class=25"]


@needs_fmnist
def test_c1_finer_identities_on_fashion_mnist():
    cfg = load_experiment_config("experiment-fmnist-c1")
    sc = check_prefix(cfg.data, [25])
    assert sc.num_classes == 30 and sc.num_public_classes == 30
    assert all(sc.private_categories.count(c) == 3 == sc.public_categories.count(c) for c in range(10))
    assert not sc._private.sample_ids() & sc._public.sample_ids()  # no image on both sides
    assert _per_class(sc, "train") == [100] * 30 and _per_class(sc, "val") == [30] * 30
    assert min(_per_class(sc, "test")) >= 15
    counts = torch.bincount(sc.identities.labels[sc.identities.labels >= 0])
    print("images per private identity:", sorted(counts[list(sc.identities.private)].tolist()))


def test_pilot_rule_takes_the_smallest_k_with_a_five_point_gap():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("c1_study", Path(__file__).parents[1] / "bench" / "c1_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    choose_k, pilot_row = study.choose_k, study.pilot_row
    row = {"name": "hard", "seed": 0, "attack_acc1": 0.80, "attack_acc_category": 0.86, "val_acc": 0.7, "test_acc": 0.72}
    pilot = pilot_row({"rows": [{**row, "name": "hard_n25"}, row]})
    assert pilot["gap"] == pytest.approx(0.06, abs=1e-12) and pilot["val_acc"] == 0.7
    small = {**pilot, "gap": 0.04}
    assert choose_k({6: pilot, 8: small}) == 6
    assert choose_k({6: small, 8: pilot}) == 8
    assert choose_k({6: small, 8: small}) == 8  # neither reaches 5 points: the finer construction, said so
