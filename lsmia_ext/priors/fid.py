"""FID of a prior: Frechet distance between EMA samples and held-out public images, measured in the
penultimate features of a small CNN trained here on the public train split.

Why our own extractor: no pretrained Inception-v3 can be downloaded on these machines, and 28 px grey
clothes are far from ImageNet anyway. The extractor is seeded and saved (RUN_DIR/fid_features.pt), so
numbers compare across priors measured with the same file, not with published FIDs.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..runio import load_checkpoint, save_checkpoint


class FidFeatureNet(nn.Module):
    """Two conv blocks, global average pool, a 128-d feature layer (the FID space), a class head."""

    feature_dim = 128

    def __init__(self, channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.arch = dict(channels=channels, num_classes=num_classes, width=width)
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(2 * width, self.feature_dim), nn.ReLU())
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_feature_net(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int, width: int,
                      seed: int, batch_size: int = 128) -> FidFeatureNet:
    """Seeded supervised training on public train images; the classes give the features meaning."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FidFeatureNet(images.shape[1], num_classes, width)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=gen).split(batch_size):
            loss = F.cross_entropy(net(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: FidFeatureNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    preds = torch.cat([net(x).argmax(1) for x in images.split(512)])
    return (preds == labels).float().mean().item()


@torch.no_grad()
def features(net: FidFeatureNet, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([net.features(x) for x in images.split(512)])


@torch.no_grad()
def category_shares(net: FidFeatureNet, images: torch.Tensor, class_category: list[int],
                    category_names: list[str]) -> dict[str, float]:
    """Share of `images` per category: the public class the feature net predicts, mapped to its category.
    A prior that can draw the whole domain gives every category a share near that of the real images."""
    preds = torch.cat([net(x).argmax(1) for x in images.split(512)])
    cats = torch.tensor(class_category)[preds]
    counts = torch.bincount(cats, minlength=len(category_names)).double() / max(len(cats), 1)
    present = sorted(set(class_category))
    return {category_names[c]: round(counts[c].item(), 4) for c in present}


def save_feature_net(path: Path, net: FidFeatureNet, test_accuracy: float) -> None:
    save_checkpoint(path, {"state_dict": net.state_dict(), "arch": net.arch, "test_accuracy": test_accuracy})


def load_feature_net(path: Path) -> FidFeatureNet:
    ckpt = load_checkpoint(path)
    net = FidFeatureNet(**ckpt["arch"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval()


def frechet(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """The project's Frechet distance (lsmia_ext.metrics.frechet)."""
    from ..metrics.frechet import frechet_distance
    return frechet_distance(feats_a, feats_b)
