"""torch Datasets that yield (image float [0, 1] (C, H, W), int label).

Built-in datasets live in memory as uint8 (N, C, H, W) already at the scenario's size and channel count, so
a batch is one indexing op plus a division; augmentation then runs on whole batches (augment.py).
Image folders load lazily with PIL (resize the short side, centre crop).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import UserInputError

# ITU-R BT.601 luma weights, the usual RGB -> grey conversion (as PIL's "L" mode).
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """float (N, C, H, W) -> (N, channels, H, W): grey is repeated to RGB, RGB becomes luma."""
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        return (images * _LUMA.view(1, 3, 1, 1).to(images)).sum(1, keepdim=True)
    raise ValueError(f"cannot convert images with {c} channels to {channels} (allowed: 1 or 3)")


def prepare_uint8(images: torch.Tensor, image_size: int, channels: int, chunk: int = 4096) -> torch.Tensor:
    """Resizes (antialiased bilinear) and converts uint8 (N, C, H, W) images once, in chunks."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size and images.shape[1] == channels:
        return images.contiguous()
    out = []
    for part in images.split(chunk):
        x = convert_channels(part.float() / 255.0, channels)
        if x.shape[-2:] != (image_size, image_size):
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        out.append((x.clamp(0, 1) * 255.0).round().to(torch.uint8))
    return torch.cat(out)


class InMemoryImages(Dataset):
    """uint8 images in memory; `tensors()` hands out the whole split as float at once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"InMemoryImages wants uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images")
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return self.images[i].float() / 255.0, int(self.labels[i])

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of the given indices: one gather, no per-sample Python."""
        return self.images[index].float() / 255.0, self.labels[index]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images.float() / 255.0, self.labels.clone()


class ImageFolderImages(Dataset):
    """Image files loaded on access: short side resized to image_size, centre-cropped, converted."""

    def __init__(self, files: list[Path], labels: torch.Tensor, image_size: int, channels: int):
        from torchvision.transforms import v2

        if len(files) != labels.numel():
            raise ValueError(f"{len(files)} files but {labels.numel()} labels")
        self.files, self.labels = list(files), labels.long()
        self.image_size, self.channels = image_size, channels
        self.mode = "L" if channels == 1 else "RGB"
        self.transform = v2.Compose([
            v2.PILToTensor(),
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
        ])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        try:
            with Image.open(self.files[i]) as img:
                x = self.transform(img.convert(self.mode))
        except OSError as e:  # unreadable, truncated or not an image (PIL.UnidentifiedImageError is an OSError)
            raise UserInputError(f"image {self.files[i]} cannot be read ({type(e).__name__}: "
                                 f"{(str(e).strip().splitlines() or ['?'])[0]}); fix or remove it") from None
        return x, int(self.labels[i])

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack([self[int(i)][0] for i in index]), self.labels[index]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self) == 0:
            return torch.empty(0, self.channels, self.image_size, self.image_size), self.labels.clone()
        return self.batch(torch.arange(len(self)))
