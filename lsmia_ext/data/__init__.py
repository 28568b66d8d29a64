"""Datasets and scenarios: private classes for the target, public classes (or another dataset) for the prior.

    from lsmia_ext.data import DataConfig, load_scenario
    sc = load_scenario(DataConfig(name="fashion-mnist", private_classes=[0, 1, 2, 3, 4],
                                  public_classes=[5, 6, 7, 8, 9], image_size=28))
    x, y = sc.tensors("private_train")       # float [0, 1] (n, 1, 28, 28), int64 labels 0..4
"""
from .augment import AugmentConfig, BatchAugment
from .config import DATASET_NAMES, DataConfig, PublicDataConfig
from .datasets import ImageFolderImages, InMemoryImages
from .scenario import SPLITS, DataSeparationError, Scenario, load_scenario, stratified_split
from .sources import DatasetNotFoundError

__all__ = [
    "AugmentConfig", "BatchAugment", "DATASET_NAMES", "DataConfig", "DataSeparationError",
    "DatasetNotFoundError", "ImageFolderImages", "InMemoryImages", "PublicDataConfig", "SPLITS", "Scenario",
    "load_scenario", "stratified_split",
]
