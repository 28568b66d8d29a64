"""How a generator image is shown to the target: channel conversion, resizing, random crops, flips,
and the target's class confidences over such views.

Random resized crops are drawn per image (not one crop for the whole batch) and applied with one
affine grid_sample, which crops, resizes to the target's input size and flips in a single
differentiable op over the whole batch.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# ITU-R BT.601 luma: the usual weights for turning RGB into grey.
_LUMA = (0.299, 0.587, 0.114)


def target_geometry(target: nn.Module) -> tuple[int, int]:
    """(in_channels, image_size) a classifier expects; a clear error when it does not say."""
    try:
        return int(target.in_channels), int(target.image_size)
    except AttributeError:
        raise ValueError("the target must expose in_channels and image_size (see lsmia_ext.models)") from None


def check_compatible(src_channels: int, dst_channels: int) -> None:
    """Grey <-> RGB is converted; any other mismatch cannot be matched."""
    if src_channels != dst_channels and {src_channels, dst_channels} != {1, 3}:
        raise ValueError(f"cannot show {src_channels}-channel images to a {dst_channels}-channel target; "
                         "only equal channel counts or grey <-> RGB (1 <-> 3) can be matched")


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    c = images.shape[1]
    check_compatible(c, channels)
    if c == channels:
        return images
    if c == 1:
        return images.expand(-1, 3, -1, -1)
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def to_target(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """The plain view: channels matched, resized (antialiased when shrinking) to size x size."""
    images = match_channels(images, channels)
    if images.shape[-2:] != (size, size):
        shrink = images.shape[-1] > size
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return images


def draw_views(n: int, generator: torch.Generator) -> torch.Tensor:
    """The randomness of n random views, (n, 5) uniforms: drawn once for a whole batch so that
    processing it in chunks does not change which view a row gets."""
    return torch.rand(n, 5, generator=generator)


def random_resized_crop(images: torch.Tensor, size: int, scale: tuple[float, float], ratio: tuple[float, float],
                        hflip_p: float, u: torch.Tensor) -> torch.Tensor:
    """Per-image random crop of area fraction in `scale` and aspect ratio in `ratio` (log-uniform, as
    torchvision), resized to size x size, mirrored with probability hflip_p; u = draw_views(B, ...).

    torchvision retries crops that do not fit; here an oversized side is clipped to the full image,
    which keeps the op free of data-dependent loops.
    """
    b = images.shape[0]
    if u.shape != (b, 5):
        raise ValueError(f"random_resized_crop needs u of shape ({b}, 5) from draw_views; got {tuple(u.shape)}")
    u = u.to(images.device, images.dtype)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)  # fractions of the image's width and height
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (2 * u[:, 2] - 1) * (1 - w)  # crop centre in grid coordinates [-1, 1], crop inside the image
    cy = (2 * u[:, 3] - 1) * (1 - h)
    sign = torch.where(u[:, 4] < hflip_p, -1.0, 1.0).to(images.dtype)
    theta = torch.zeros(b, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_view(images: torch.Tensor, channels: int, size: int, scale, ratio, hflip_p: float,
                u: torch.Tensor) -> torch.Tensor:
    """A random crop (and flip) of each image, as the target sees it; u = draw_views(B, ...)."""
    return random_resized_crop(match_channels(images, channels), size, scale, ratio, hflip_p, u)


def logit_margins(logits: torch.Tensor) -> torch.Tensor:
    """(B, K) margins z_k - max_{j != k} z_j of every class k: positive only for the top class. Raw logits,
    so scaling them by a positive temperature scales every margin alike and never changes a ranking."""
    if logits.shape[1] < 2:
        raise ValueError("logit_margin needs at least 2 classes")
    top2 = logits.topk(2, dim=1).values
    is_top = logits == top2[:, :1]
    # the best other class: the runner-up for the top class (a tie gives margin 0), the top for the rest
    return logits - torch.where(is_top, top2[:, 1:], top2[:, :1])


def class_scores(logits: torch.Tensor, score: str) -> torch.Tensor:
    """(B, K) selection score of every class from one forward pass: softmax confidence or logit margin."""
    logits = logits.float()
    if score == "confidence":
        return logits.softmax(dim=1)
    if score == "logit_margin":
        return logit_margins(logits)
    raise ValueError(f"unknown selection score {score!r}; allowed: confidence, logit_margin")


def ensemble_scores(members: Sequence[nn.Module], view: torch.Tensor, score: str) -> torch.Tensor:
    """(B, K) mean over the ensemble members (target first, then its surrogates) of each one's class scores."""
    if len(members) == 1:
        return class_scores(members[0](view), score)
    return torch.stack([class_scores(m(view), score) for m in members]).mean(dim=0)


@torch.no_grad()
def scores(members: Sequence[nn.Module], images: torch.Tensor, hflip: bool, batch_size: int,
           score: str = "confidence") -> torch.Tensor:
    """(B, K) class scores of the plain view, averaged with the mirrored view when hflip, averaged over the
    members (all share the first member's geometry)."""
    channels, size = target_geometry(members[0])
    out = []
    for chunk in images.split(batch_size):
        x = to_target(chunk, channels, size)
        s = ensemble_scores(members, x, score)
        if hflip:
            s = (s + ensemble_scores(members, x.flip(-1), score)) / 2
        out.append(s)
    return torch.cat(out)


def confidences(target: nn.Module, images: torch.Tensor, hflip: bool, batch_size: int) -> torch.Tensor:
    """Softmax of the target over the plain view, averaged with the mirrored view when hflip: (B, K)."""
    return scores([target], images, hflip, batch_size, "confidence")
