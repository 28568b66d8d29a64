"""The user's image folders: checked up front (one clear line per problem), then described as the
DataConfig every stage reads (name: imagefolder, private folder + public folder as public_dataset)."""
from __future__ import annotations

from pathlib import Path

from ..data import DataConfig
from ..data.sources import IMAGE_SUFFIXES


def _images(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def private_classes(root: str | Path) -> list[str]:
    """Names of the identity folders of the private data (sorted = label order); every one must hold images."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--private {root} is not a directory (one sub-folder of images per identity)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise ValueError(f"--private {root} has {len(classes)} class sub-folder(s); an audit needs one sub-folder "
                         "of images per identity and at least 2 of them")
    empty = [c for c in classes if not _images(root / c)]
    if empty:
        raise ValueError(f"--private class folder {root / empty[0]} holds no images "
                         f"({len(empty)} empty folder(s): {', '.join(empty[:5])}); remove it or add images "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    small = [c for c in classes if len(_images(root / c)) < 2]
    if small:
        raise ValueError(f"--private class folder {root / small[0]} holds a single image; each identity needs at "
                         "least 2 (one is held out to measure the model's test accuracy)")
    return classes


def private_test_set(root: str | Path, classes: list[str], image_size: int, channels: int):
    """--private-test: held-out images in the same class sub-folders as --private -> (images, labels)."""
    from ..data.datasets import ImageFolderImages
    from ..data.sources import scan_imagefolder

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--private-test {root} is not a directory (the class sub-folders of --private, "
                                "with held-out images)")
    have = sorted(d.name for d in root.iterdir() if d.is_dir())
    if have != classes:
        missing, extra = sorted(set(classes) - set(have)), sorted(set(have) - set(classes))
        raise ValueError(f"--private-test {root} must have the class sub-folders of --private ({len(classes)}); "
                         f"missing: {', '.join(missing[:5]) or 'none'}; not in --private: {', '.join(extra[:5]) or 'none'}")
    empty = [c for c in classes if not _images(root / c)]
    if empty:
        raise ValueError(f"--private-test class folder {root / empty[0]} holds no images "
                         f"({len(empty)} empty folder(s)); every class needs held-out images")
    raw = scan_imagefolder(root)
    return ImageFolderImages(raw.files, raw.labels, image_size, channels).tensors()


def check_public(root: str | Path) -> int:
    """Number of public images (a flat folder or sub-folders; labels are not needed)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--public {root} is not a directory of images")
    n = len(_images(root))
    if n < 2:
        raise ValueError(f"--public {root} holds {n} image(s); the generator prior needs public images to learn "
                         "from")
    subdirs = [d for d in root.iterdir() if d.is_dir()]
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if subdirs and loose:
        raise ValueError(f"--public {root} mixes images and sub-folders: use either a flat folder of images or "
                         "sub-folders only")
    return n


def audit_data(private: str | Path, public: str | Path, image_size: int, channels: int, test_fraction: float,
               train_per_class: int | None, seed: int) -> DataConfig:
    classes = private_classes(private)
    check_public(public)
    return DataConfig(name="imagefolder", root=Path(private).resolve(), private_classes=list(range(len(classes))),
                      public_dataset={"name": "imagefolder", "root": Path(public).resolve()}, image_size=image_size,
                      channels=channels, test_fraction=test_fraction, train_per_class=train_per_class, seed=seed)


def folder_fingerprint(root: str | Path) -> str:
    """Hash of every image's relative path, size and modification time: a changed folder is new data, so
    the stages trained on it are not reused."""
    import hashlib

    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(_images(root)):
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
