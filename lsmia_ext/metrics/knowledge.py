"""Knowledge extraction score (KES): how much a fresh student learns about the private classes from
the attack images alone. The student trains only on the attack images (label = attacked class) and is
then scored on the real private train and test images: an attack that recovered class-typical content
transfers; one that found adversarial noise does not.

The paper's student is an ImageNet-pretrained ResNet-50 trained for many epochs with crop and flip
augmentation. Without pretrained weights, a student that can learn from a few hundred images needs
augmentation and enough optimisation: it trains for a fixed number of *steps* (independent of how many
attack images there are, so 100 and 1000 images get the same optimisation budget) on randomly
resized crops (and flips where the scenario allows them) with a cosine learning rate. Its ability to
learn is validated in python_tests/test_metrics.py both ways: trained on as many real private images
it scores far above chance, trained on those images with shuffled labels it scores at chance.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from ..config import Strict
from ..data.augment import AugmentConfig, BatchAugment
from .accuracy import topk_accuracy
from .features import check_images, check_labels, fit_to_model, predict_logits


class KesConfig(Strict):
    """The knowledge-extraction student (runs once per attack). Defaults measured on 28 px grey images,
    20 classes x 25 images: about 15 s on 1 CPU thread (see python_tests/test_metrics.py)."""
    arch: str = "small_cnn"
    steps: int = Field(300, ge=1, description="optimisation steps, whatever the number of attack images")
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-3, gt=0.0, description="Adam peak learning rate, cosine decay to 0 over the steps")
    weight_decay: float = Field(5e-4, ge=0.0)
    crop_scale: tuple[float, float] = Field((0.6, 1.0), description="RandomResizedCrop area range")
    crop_ratio: tuple[float, float] = (0.8, 1.25)
    hflip: bool = Field(True, description="flip with p = 0.5, only where the scenario allows flips")

    @model_validator(mode="after")
    def _crop_ranges(self):
        self._augment_config()  # a bad crop range fails when the config loads, not after the attack
        return self

    def _augment_config(self) -> AugmentConfig:
        return AugmentConfig(crop_scale=self.crop_scale, crop_ratio=self.crop_ratio, hflip=self.hflip)

    def augment(self, allows_hflip: bool) -> BatchAugment:
        return BatchAugment(self._augment_config(), allows_hflip)


def train_student(images: torch.Tensor, labels: torch.Tensor, cfg: KesConfig, num_classes: int,
                  image_size: int, seed: int, allows_hflip: bool = False):
    """A fresh cfg.arch classifier trained for cfg.steps augmented batches of (images, labels); eval mode.

    Batches are drawn without replacement, reshuffled at every pass over the images. The global RNG is
    left untouched (forked), so the score does not depend on what ran before and scoring does not
    shift the seeds of later stages."""
    from ..models import build_model  # heavy (torchvision); only needed here

    augment = cfg.augment(allows_hflip)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = build_model(cfg.arch, num_classes=num_classes, in_channels=images.shape[1], image_size=image_size)
        x = fit_to_model(student, images.float())
        n, batch = x.shape[0], min(cfg.batch_size, x.shape[0])
        opt = torch.optim.Adam(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        order, pos = torch.randperm(n, generator=gen), 0
        student.train()
        for step in range(cfg.steps):
            if pos + batch > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos:pos + batch]
            pos += batch
            for group in opt.param_groups:
                group["lr"] = 0.5 * cfg.lr * (1 + math.cos(math.pi * step / cfg.steps))
            loss = F.cross_entropy(student(augment(x[idx], gen)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return student.eval()


def knowledge_extraction(attack_images: torch.Tensor, attack_labels: torch.Tensor,
                         private_train: tuple[torch.Tensor, torch.Tensor],
                         private_test: tuple[torch.Tensor, torch.Tensor],
                         num_classes: int, cfg: KesConfig | None = None, seed: int = 0,
                         image_size: int | None = None, allows_hflip: bool = False) -> dict[str, float]:
    """{"kes_train", "kes_test"}: accuracy on the private train / test sets (each an (images, labels)
    pair) of a student (cfg) trained only on the attack images.

    The student works at `image_size` (default: the private images' size). When fewer classes were
    attacked than exist, it can only ever predict the attacked ones; so the score is measured on the
    private images of the attacked classes only, where 1.0 stays reachable (chance: 1 / attacked classes)."""
    cfg = cfg or KesConfig()
    check_images(attack_images, "attack images")
    attack_labels = check_labels(attack_labels, attack_images.shape[0], num_classes, "attack labels")
    if attack_images.shape[0] < 2:
        raise ValueError(f"knowledge extraction needs at least 2 attack images, got {attack_images.shape[0]}")
    sets = {"kes_train": private_train, "kes_test": private_test}
    for name, (imgs, labs) in sets.items():
        check_images(imgs, f"{name} images")
        check_labels(labs, imgs.shape[0], num_classes, f"{name} labels")
    size = image_size or private_train[0].shape[-1]
    student = train_student(attack_images, attack_labels, cfg, num_classes, size, seed, allows_hflip)
    attacked = attack_labels.unique()
    out = {}
    for name, (imgs, labs) in sets.items():
        keep = torch.isin(labs, attacked)
        if not keep.any():
            raise ValueError(f"{name}: the private set holds no image of the attacked classes {attacked.tolist()}")
        # the student's logits of unattacked classes never saw a positive example: leave them out
        logits = predict_logits(student, imgs[keep])[:, attacked]
        out[name] = topk_accuracy(logits, torch.searchsorted(attacked, labs[keep].long()), 1)
    return out
