"""Training augmentation applied to whole float batches (no per-sample PIL in the hot path).

RandomResizedCrop and the horizontal flip are one affine resampling per image (affine_grid + grid_sample);
colour jitter is per-image factors broadcast over the batch. Every random draw comes from the
torch.Generator passed in, so a run is reproducible and resumable from (seed, epoch).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from ..config import Strict

# RGB <-> YIQ; a hue shift is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


class AugmentConfig(Strict):
    """crop_scale: area fraction range of RandomResizedCrop ([1, 1] = off); crop_ratio: aspect ratio range;
    brightness/contrast/saturation: jitter factor drawn from [1 - v, 1 + v]; hue: shift in [-v, v] turns
    (saturation and hue act on RGB only); hflip: flip with p = 0.5 where the dataset allows it."""

    crop_scale: tuple[float, float] = (1.0, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = Field(default=0.0, ge=0.0, lt=1.0)
    contrast: float = Field(default=0.0, ge=0.0, lt=1.0)
    saturation: float = Field(default=0.0, ge=0.0, lt=1.0)
    hue: float = Field(default=0.0, ge=0.0, le=0.5)
    hflip: bool = False

    @model_validator(mode="after")
    def _ranges(self):
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"augment.crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio
        if not 0.0 < lo <= hi:
            raise ValueError(f"augment.crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        return self


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (x * _RGB2YIQ[0].view(1, 3, 1, 1).to(x)).sum(1, keepdim=True)


class BatchAugment:
    """Callable (images (B, C, H, W) in [0, 1], generator) -> augmented images, same shape, in [0, 1]."""

    def __init__(self, cfg: AugmentConfig, allows_hflip: bool):
        self.cfg = cfg
        self.hflip = cfg.hflip and allows_hflip
        self.crop = cfg.crop_scale != (1.0, 1.0)

    @property
    def active(self) -> bool:
        c = self.cfg
        return self.crop or self.hflip or any(v > 0 for v in (c.brightness, c.contrast, c.saturation, c.hue))

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"BatchAugment wants (B, C, H, W) images, got shape {tuple(x.shape)}")
        if self.crop or self.hflip:
            x = self._crop_flip(x, gen)
        return self._jitter(x, gen)

    def _crop_flip(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        area = _uniform(b, *self.cfg.crop_scale, gen) if self.crop else torch.ones(b)
        log_r = _uniform(b, math.log(self.cfg.crop_ratio[0]), math.log(self.cfg.crop_ratio[1]), gen)
        ratio = log_r.exp() if self.crop else torch.ones(b)
        # half-widths in normalised coordinates ([-1, 1] spans the image); the crop must fit inside.
        w = (area * ratio).sqrt().clamp(max=1.0)
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = (2 * torch.rand(b, generator=gen) - 1) * (1 - w)
        cy = (2 * torch.rand(b, generator=gen) - 1) * (1 - h)
        sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if self.hflip else torch.ones(b)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        c, b = self.cfg, x.shape[0]

        def factor(v: float) -> torch.Tensor:
            return _uniform(b, 1 - v, 1 + v, gen).view(b, 1, 1, 1).to(x)

        if c.brightness > 0:
            x = (x * factor(c.brightness)).clamp(0, 1)
        if c.contrast > 0:
            mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * factor(c.contrast) + mean).clamp(0, 1)
        if x.shape[1] == 3 and c.saturation > 0:
            grey = _grey(x)
            x = ((x - grey) * factor(c.saturation) + grey).clamp(0, 1)
        if x.shape[1] == 3 and c.hue > 0:
            x = self._hue(x, _uniform(b, -c.hue, c.hue, gen).to(x) * 2 * math.pi)
        return x

    @staticmethod
    def _hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        yiq = torch.einsum("ij,bjhw->bihw", _RGB2YIQ.to(x), x)
        cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
        return torch.einsum("ij,bjhw->bihw", _YIQ2RGB.to(x), yiq).clamp(0, 1)


def erase_boxes(n: int, height: int, width: int, scale: tuple[float, float], p: float,
                gen: torch.Generator) -> torch.Tensor:
    """Random erasing's boxes as a boolean mask (n, 1, H, W), True where a pixel is erased.

    Per image: with probability p, a square of area fraction a ~ U[scale] (side round(sqrt(a H W)), at most
    min(H, W) - 1 so that it fits as torchvision's RandomErasing requires) at a uniformly drawn position
    (top-left corner in 0..H - side, 0..W - side). Draws, in order: a (n), the coin (n), top (n), left (n)."""
    area = _uniform(n, scale[0], scale[1], gen)
    apply = torch.rand(n, generator=gen) < p
    side = (area * height * width).sqrt().round().long().clamp(1, min(height, width) - 1)
    top = (torch.rand(n, generator=gen) * (height - side + 1)).floor().long()
    left = (torch.rand(n, generator=gen) * (width - side + 1)).floor().long()
    rows, cols = torch.arange(height), torch.arange(width)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < (top + side)[:, None])
    in_cols = (cols[None] >= left[:, None]) & (cols[None] < (left + side)[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None])[:, None]


def random_erase(x: torch.Tensor, scale: tuple[float, float], p: float, value: float,
                 gen: torch.Generator) -> torch.Tensor:
    """Images (B, C, H, W) with erase_boxes(...) set to `value` in every channel (a new tensor)."""
    if x.dim() != 4:
        raise ValueError(f"random_erase wants (B, C, H, W) images, got shape {tuple(x.shape)}")
    mask = erase_boxes(x.shape[0], x.shape[2], x.shape[3], scale, p, gen).to(x.device)
    return x.masked_fill(mask, value)
