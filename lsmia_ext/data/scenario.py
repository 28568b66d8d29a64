"""load_scenario: split a dataset into private (target) and public (prior) parts, deterministically.

The separation guarantee: every sample has an identity (data source + index, or resolved file path);
the private and public identity sets are checked to be disjoint before a Scenario is handed out.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Union

import torch
from torch.utils.data import Dataset

from ..runio import file_sha256, update_manifest, write_json
from .config import DataConfig, PublicDataConfig
from .datasets import ImageFolderImages, InMemoryImages, prepare_uint8
from .identities import IdentityAssignment, assign_identities, relabel
from .sources import RawData, load_source

SPLITS = ("private_train", "private_val", "private_test", "public_train", "public_test")
MANIFEST_NAME = "data_manifest.json"
ImageDataset = Union[InMemoryImages, ImageFolderImages]


class DataSeparationError(AssertionError):
    """A private sample was about to reach a public split."""


@dataclass
class _Part:
    """One side (private or public) of a scenario before datasets are built."""

    raw: RawData
    classes: list[int]
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    val_idx: torch.Tensor

    def sample_ids(self) -> set[str]:
        idx = torch.cat([self.train_idx, self.val_idx, self.test_idx]).tolist()
        if self.raw.files:
            return {str(self.raw.files[i].resolve()) for i in idx}
        return {f"{self.raw.key}#{i}" for i in idx}


def _check_classes(raw: RawData, classes: list[int], what: str) -> None:
    bad = [c for c in classes if c >= raw.num_classes]
    if bad:
        raise ValueError(f"{what} {bad} out of range: the dataset has classes 0..{raw.num_classes - 1} "
                         f"({', '.join(raw.class_names[:12])}{', ...' if raw.num_classes > 12 else ''})")


def stratified_split(labels: torch.Tensor, classes: list[int], test_fraction: float, seed: int,
                     train_per_class: int | None = None, val_per_class: int | None = None):
    """Per class: shuffle its indices with `seed`, hold out round(n * test_fraction) (at least 1 when the
    class has 2 or more images) as test, keep at most `train_per_class` of the rest for training and at
    most `val_per_class` for validation. With train_per_class set, validation takes the images after the
    training ones (the training images are those of the same call without validation); without it,
    validation takes the images before them. Returns sorted (train_idx, test_idx, val_idx); val_idx is
    empty without val_per_class."""
    gen = torch.Generator().manual_seed(seed)
    train, test, val = [], [], []
    for c in classes:
        idx = (labels == c).nonzero().flatten()
        if idx.numel() == 0:
            raise ValueError(f"class {c} has no images in this dataset")
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_test = min(max(round(idx.numel() * test_fraction), 1 if idx.numel() > 1 else 0), idx.numel() - 1)
        test.append(idx[:n_test])
        rest = idx[n_test:]
        n_val = 0 if val_per_class is None else min(val_per_class, rest.numel() - 1)
        if train_per_class is not None:
            train.append(rest[:train_per_class])
            val.append(rest[train_per_class:][:n_val])
        else:
            val.append(rest[:n_val])
            train.append(rest[n_val:])
        if val_per_class is not None and val[-1].numel() == 0:
            raise ValueError(f"class {c} has no image left for the validation split ({idx.numel()} images: "
                             f"{n_test} test, {train[-1].numel()} training): lower train_per_class or test_fraction")
    return tuple(torch.cat(part).sort().values for part in (train, test, val))


def _make_part(raw: RawData, classes: list[int], test_fraction: float, seed: int, what: str,
               train_per_class: int | None = None, val_per_class: int | None = None) -> _Part:
    _check_classes(raw, classes, what)
    return _Part(raw, classes, *stratified_split(raw.labels, classes, test_fraction, seed, train_per_class,
                                                 val_per_class))


def _detect_channels(raw: RawData) -> int:
    if raw.images is not None:
        return int(raw.images.shape[1])
    from PIL import Image

    with Image.open(raw.files[0]) as img:
        return 1 if img.mode in ("1", "L", "I", "I;16", "F") else 3


def _remap(labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    lut = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
    lut[torch.tensor(classes)] = torch.arange(len(classes))
    return lut[labels]


def _empty(image_size: int, channels: int) -> InMemoryImages:
    return InMemoryImages(torch.empty(0, channels, image_size, image_size, dtype=torch.uint8),
                          torch.empty(0, dtype=torch.long))


def _dataset(part: _Part, idx: torch.Tensor, image_size: int, channels: int) -> ImageDataset:
    if idx.numel() == 0:
        return _empty(image_size, channels)
    labels = _remap(part.raw.labels[idx], part.classes)
    if part.raw.images is not None:
        return InMemoryImages(prepare_uint8(part.raw.images[idx], image_size, channels), labels)
    return ImageFolderImages([part.raw.files[i] for i in idx.tolist()], labels, image_size, channels)


@lru_cache(maxsize=64)
def _sha256_cached(path: str) -> str:
    return file_sha256(Path(path))


class Scenario:
    """Private train/val/test (target) and public train/test (prior) splits of one DataConfig.

    private_val is empty unless the config sets val_per_class.

    Labels: private 0..P-1 in the order of private_classes, public 0..Q-1 in the order of the public classes.
    """

    def __init__(self, cfg: DataConfig, private: _Part, public: _Part | None, image_size: int, channels: int,
                 identities: IdentityAssignment | None = None):
        self.cfg, self._private, self._public, self.identities = cfg, private, public, identities
        self.image_size, self.channels = image_size, channels
        self.num_classes = len(private.classes)
        self.num_public_classes = len(public.classes) if public else 0
        self.class_names = [private.raw.class_names[c] for c in private.classes]
        self.public_class_names = [public.raw.class_names[c] for c in public.classes] if public else []
        self.allows_hflip = private.raw.allows_hflip
        # Category of every private / public class (the sub-class's category for identities, else the class
        # itself) and the category names: what "the attack found the right kind of image" is judged by.
        self.private_categories = self._categories(private)
        self.public_categories = self._categories(public) if public else []
        self.category_names = (list(identities.category_names) if identities
                               else list(private.raw.class_names))
        self.private_train = _dataset(private, private.train_idx, image_size, channels)
        self.private_val = _dataset(private, private.val_idx, image_size, channels)
        self.private_test = _dataset(private, private.test_idx, image_size, channels)
        empty = _empty(image_size, channels)
        self.public_train = _dataset(public, public.train_idx, image_size, channels) if public else empty
        self.public_test = _dataset(public, public.test_idx, image_size, channels) if public else empty

    def _categories(self, part: _Part) -> list[int]:
        if self.identities is not None:
            return [self.identities.category[c] for c in part.classes]
        return list(part.classes)

    def split(self, name: str) -> Dataset:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; allowed: {', '.join(SPLITS)}")
        return getattr(self, name)

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as (images float [0, 1] (n, C, H, W), labels int64 (n,))."""
        return self.split(split).tensors()

    def _describe(self, part: _Part) -> dict:
        raw = part.raw
        out = {"source": raw.key, "classes": part.classes,
               "class_names": [raw.class_names[c] for c in part.classes],
               "source_sha256": {str(p): _sha256_cached(str(p)) for p in raw.sources}}
        splits = [("train", part.train_idx), ("test", part.test_idx)]
        if part.val_idx.numel():  # manifests of scenarios without validation stay as they were
            splits.append(("val", part.val_idx))
        for name, idx in splits:
            if raw.files:
                root = Path(raw.key.split(":", 1)[1])
                out[f"{name}_files"] = [str(raw.files[i].relative_to(root)) for i in idx.tolist()]
            else:
                out[f"{name}_indices"] = idx.tolist()
        return out

    def manifest(self) -> dict:
        import hashlib
        import json

        body = {"config": self.cfg.model_dump(mode="json"), "image_size": self.image_size,
                "channels": self.channels, "private": self._describe(self._private),
                "public": self._describe(self._public) if self._public else None,
                "identities_sha256": self.identities.sha256 if self.identities else None}
        body["splits_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return body

    def write_manifest(self, run_dir: Path) -> Path:
        """Writes RUN_DIR/data_manifest.json (indices or file lists + hashes) and records it in the manifest."""
        path = write_json(Path(run_dir) / MANIFEST_NAME, self.manifest())
        update_manifest(run_dir, data_manifest=MANIFEST_NAME)
        return path


def _public_part(cfg: DataConfig, private_raw: RawData, public_classes: list[int]) -> _Part | None:
    if cfg.public_dataset is not None:
        pub: PublicDataConfig = cfg.public_dataset
        raw = load_source(pub.name, pub.root, pub.allow_download)
        classes = pub.classes or list(range(raw.num_classes))
        return _make_part(raw, classes, cfg.test_fraction, cfg.seed + 1, "public_dataset.classes")
    if public_classes:
        return _make_part(private_raw, public_classes, cfg.test_fraction, cfg.seed + 1, "public_classes")
    return None


def identity_assignment(cfg: DataConfig, raw: RawData) -> IdentityAssignment:
    ids = cfg.identities
    categories = tuple(ids.categories) or tuple(range(raw.num_classes))
    return assign_identities(raw, categories, ids.per_category, ids.private_per_category, ids.pca_dim,
                             ids.kmeans_seed, ids.split_seed)


def load_scenario(cfg: DataConfig) -> Scenario:
    """Loads the data of `cfg`, splits it, asserts that no private sample is in a public split."""
    raw = load_source(cfg.name, cfg.root, cfg.allow_download)
    private_classes, public_classes, identities = cfg.private_classes, cfg.public_classes, None
    if cfg.identities is not None:
        identities = identity_assignment(cfg, raw)
        raw = relabel(raw, identities, f"identities:{identities.sha256[:16]}")
        private_classes, public_classes = list(identities.private), list(identities.public)
    private = _make_part(raw, private_classes, cfg.test_fraction, cfg.seed, "private_classes",
                         cfg.train_per_class, cfg.val_per_class)
    public = _public_part(cfg, raw, public_classes)
    if public is not None:
        leaked = private.sample_ids() & public.sample_ids()
        if leaked:
            raise DataSeparationError(f"{len(leaked)} private samples would land in a public split, "
                                      f"e.g. {sorted(leaked)[:3]}")
    image_size = cfg.image_size or int(raw.images.shape[-1])
    channels = cfg.channels or _detect_channels(raw)
    return Scenario(cfg, private, public, image_size, channels, identities)
