"""Identity-like scenario: k-means sub-classes per category, half private, half public (data/identities.py)."""
import pytest
import torch

from lsmia_ext.config import ConfigError, load_config, validate
from lsmia_ext.data import DataConfig, load_scenario
from lsmia_ext.data.identities import kmeans, pca_embedding
from lsmia_ext.data.sources import FASHION_MNIST_SYSTEM_DIR
from lsmia_ext.experiment import load_experiment_config

needs_fmnist = pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.exists(),
                                  reason="Fashion-MNIST not installed (make install runs apt-get install dataset-fashion-mnist)")


def digits_identities(**kw):
    ids = {"per_category": 4, "private_per_category": 2, "pca_dim": 8, **kw}
    return DataConfig(name="digits", identities=ids, test_fraction=0.2, seed=1)


def _sample_ids(scenario, side):
    part = getattr(scenario, f"_{side}")
    return part.sample_ids()


def test_digits_identities_are_disjoint_cover_every_category_and_are_deterministic():
    sc = load_scenario(digits_identities())
    assert sc.num_classes == 20 and sc.num_public_classes == 20
    assert sorted(set(sc.private_categories)) == list(range(10)) == sorted(set(sc.public_categories))
    assert all(sc.private_categories.count(c) == 2 for c in range(10))
    assert not (_sample_ids(sc, "private") & _sample_ids(sc, "public"))  # no image on both sides
    names_private, names_public = set(sc.class_names), set(sc.public_class_names)
    assert not names_private & names_public and all(" #" in n for n in names_private)
    again = load_scenario(digits_identities())
    assert again.identities.sha256 == sc.identities.sha256
    other = load_scenario(digits_identities(split_seed=1))  # another split of the same sub-classes
    assert other.identities.private != sc.identities.private
    assert torch.equal(other.identities.labels, sc.identities.labels)  # integer labels
    assert sc.manifest()["identities_sha256"] == sc.identities.sha256


def test_kmeans_and_pca_find_obvious_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + torch.randn(50, 2, generator=gen) for c in centres]).double()
    assign, found = kmeans(points, 3, seed=0)
    for j in range(3):  # every true cluster maps onto one found cluster
        assert assign[j * 50:(j + 1) * 50].unique().numel() == 1
    assert assign.unique().numel() == 3
    images = (torch.rand(30, 1, 4, 4, generator=gen) * 255).to(torch.uint8)
    emb = pca_embedding(images, 3)
    assert emb.shape == (30, 3) and torch.allclose(emb.mean(0), torch.zeros(3, dtype=emb.dtype), atol=1e-9)
    assert emb.var(0)[0] >= emb.var(0)[1] >= emb.var(0)[2]  # ordered by explained variance


def test_bad_identity_configs_name_the_problem():
    with pytest.raises(ConfigError, match="private_per_category"):
        validate(DataConfig, {"name": "digits", "identities": {"per_category": 2, "private_per_category": 2}})
    with pytest.raises(ConfigError, match="leave private_classes"):
        validate(DataConfig, {"name": "digits", "private_classes": [0, 1], "identities": {}})
    with pytest.raises(ConfigError, match="private_classes needs at least 2"):
        validate(DataConfig, {"name": "digits", "private_classes": [0]})
    with pytest.raises(ValueError, match="out of range"):
        load_scenario(digits_identities(categories=[3, 12]))


@needs_fmnist
def test_default_study_scenario_has_20_identities_and_a_prior_that_sees_every_category():
    cfg = load_experiment_config()
    sc = load_scenario(cfg.data)
    assert sc.num_classes >= 20  # Acc@5 means something
    assert sorted(set(sc.private_categories)) == sorted(set(sc.public_categories)) == list(range(10))
    assert not (_sample_ids(sc, "private") & _sample_ids(sc, "public"))
    assert len(sc.public_train) > 25_000  # the prior's data: every category, public identities only
    # the stage configs shipped for standalone use describe the same scenario
    from lsmia_ext.train import TrainConfig

    target = load_config(TrainConfig, "train-fmnist-target")
    assert target.data.identities == cfg.data.identities
