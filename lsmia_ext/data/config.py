"""DataConfig: which dataset, which classes are private (target training) and which are public (prior)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_serializer, model_validator

from ..config import Strict

DATASET_NAMES = ("fashion-mnist", "mnist5k", "digits", "imagefolder")
DatasetName = Literal["fashion-mnist", "mnist5k", "digits", "imagefolder"]


def _check_class_list(v: list[int], field: str) -> list[int]:
    bad = [c for c in v if c < 0]
    if bad:
        raise ValueError(f"{field} must be class indices >= 0, got {bad}")
    dup = sorted({c for c in v if v.count(c) > 1})
    if dup:
        raise ValueError(f"{field} lists classes more than once: {dup}")
    return v


class PublicDataConfig(Strict):
    """A second dataset that supplies the public (prior) images, e.g. mnist5k digits for a digit target.

    `classes` empty means every class of that dataset. Images are resized and converted to the private
    data's size and channel count.
    """

    name: DatasetName
    root: Optional[Path] = None
    classes: list[int] = Field(default_factory=list)
    allow_download: bool = False

    @field_validator("classes")
    @classmethod
    def _classes(cls, v):
        return _check_class_list(v, "public_dataset.classes")


class IdentityConfig(Strict):
    """Identity-like sub-classes (lsmia_ext/data/identities.py): every category in `categories` (empty: all)
    is split by k-means on a `pca_dim`-d PCA embedding of the pixels into `per_category` sub-classes, of
    which `private_per_category` (drawn per category from `split_seed`) are private, the rest public."""

    categories: list[int] = Field(default_factory=list)
    per_category: int = Field(default=4, ge=2)
    private_per_category: int = Field(default=2, ge=1)
    pca_dim: int = Field(default=32, ge=1)
    kmeans_seed: int = 0
    split_seed: int = 0

    @field_validator("categories")
    @classmethod
    def _categories(cls, v):
        return _check_class_list(v, "identities.categories")

    @model_validator(mode="after")
    def _halves(self):
        if self.private_per_category >= self.per_category:
            raise ValueError(f"identities.private_per_category ({self.private_per_category}) must be below "
                             f"per_category ({self.per_category}): every category needs public sub-classes too")
        return self


class DataConfig(Strict):
    """The data of one scenario.

    private_classes: the target's classes, remapped to labels 0..P-1 in this order.
    public_classes: classes of the same dataset for the prior, remapped to 0..Q-1; must be disjoint from
      private_classes. Leave empty and set public_dataset to take the public images from another dataset.
    image_size: side length of the square images handed out (None: the dataset's native size; required
      for imagefolder). channels: 1 or 3 to convert (None: native; imagefolder detects it from the first
      image). test_fraction: share of each class held out as its test split (stratified, from seed).
    train_per_class: keep at most this many private training images per class (a seeded subset; the test
      split is unchanged), to fit a CPU time budget.
    val_per_class: hold out at most this many private images per class as the validation split, on which
      every choice (recipe, epochs, grid ends, the utility axis of matched comparisons) is made; the test
      split is then reported once. With train_per_class set they come from images the training split does
      not use (so the training images, and every training stage's hash, stay those without validation);
      without it they are taken before the training images. None: no validation split (older configs).
    identities: build identity-like sub-classes of every category (IdentityConfig); then private and public
      classes are the sub-classes it picks and private_classes / public_classes must stay empty.
    """

    name: DatasetName
    root: Optional[Path] = None
    private_classes: list[int] = Field(default_factory=list)
    identities: Optional[IdentityConfig] = None
    public_classes: list[int] = Field(default_factory=list)
    public_dataset: Optional[PublicDataConfig] = None
    image_size: Optional[int] = Field(default=None, ge=8, le=1024)
    channels: Optional[Literal[1, 3]] = None
    test_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    train_per_class: Optional[int] = Field(default=None, ge=1)
    val_per_class: Optional[int] = Field(default=None, ge=1)
    seed: int = 42
    allow_download: bool = False

    @model_serializer(mode="wrap")
    def _omit_unset_validation(self, handler):
        # A config without a validation split dumps (and so hashes) exactly as before the field existed.
        data = handler(self)
        if self.val_per_class is None:
            data.pop("val_per_class", None)
        return data

    def training_view(self) -> dict:
        """The dump that training stages hash: without val_per_class when the validation images are ones
        the training split does not use (train_per_class set), so adding a validation split retrains nothing."""
        data = self.model_dump(mode="json")
        if self.train_per_class is not None:
            data.pop("val_per_class", None)
        return data

    @field_validator("private_classes")
    @classmethod
    def _private(cls, v):
        return _check_class_list(v, "private_classes")

    @field_validator("public_classes")
    @classmethod
    def _public(cls, v):
        return _check_class_list(v, "public_classes")

    @model_validator(mode="after")
    def _separation(self):
        if self.identities is not None:
            if self.private_classes or self.public_classes or self.public_dataset is not None:
                raise ValueError("with identities set, private and public classes are its sub-classes: leave "
                                 "private_classes, public_classes and public_dataset empty")
            if self.name == "imagefolder":
                raise ValueError("identities need a built-in dataset; an image folder already has one folder "
                                 "per identity (list them in private_classes / public_classes)")
            return self
        if len(self.private_classes) < 2:
            raise ValueError(f"private_classes needs at least 2 classes to train a classifier, got "
                             f"{self.private_classes} (or set identities)")
        if self.public_dataset is not None and self.public_classes:
            raise ValueError("give either public_classes (same dataset) or public_dataset (another dataset), "
                             f"not both (public_classes={self.public_classes})")
        shared = sorted(set(self.private_classes) & set(self.public_classes))
        if shared:
            raise ValueError(f"public_classes {self.public_classes} overlap private_classes "
                             f"{self.private_classes} in {shared}: a private image would reach the prior")
        pub = self.public_dataset
        if pub is not None and pub.name == self.name and pub.root == self.root:
            pub_classes = set(pub.classes)
            if not pub_classes:
                raise ValueError(f"public_dataset is the private dataset {self.name!r} with all its classes: "
                                 "list public_dataset.classes disjoint from private_classes")
            shared = sorted(pub_classes & set(self.private_classes))
            if shared:
                raise ValueError(f"public_dataset.classes overlap private_classes in {shared}")
        if self.name == "imagefolder" and self.image_size is None:
            raise ValueError("image_size is required for name='imagefolder' (images of any size are resized)")
        return self
