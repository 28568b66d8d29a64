"""Knowledge extraction score (KES): how much a fresh student learns about the private classes from
the attack images alone. The student trains only on the attack images (label = attacked class) and is
then scored on the real private train and test images: an attack that recovered class-typical content
transfers; one that found adversarial noise does not."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .features import check_images, check_labels, fit_to_model, predict_logits
from .accuracy import topk_accuracy


def train_student(images: torch.Tensor, labels: torch.Tensor, arch_name: str, num_classes: int,
                  image_size: int, epochs: int, seed: int, batch_size: int = 64, lr: float = 1e-3):
    """A fresh `arch_name` classifier trained with Adam on (images, labels); returns it in eval mode.

    The global RNG is left untouched (forked), so the score does not depend on what ran before and
    scoring does not shift the seeds of later stages."""
    from ..models import build_model  # heavy (torchvision); only needed here

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = build_model(arch_name, num_classes=num_classes, in_channels=images.shape[1],
                              image_size=image_size)
        x = fit_to_model(student, images.float())
        opt = torch.optim.Adam(student.parameters(), lr=lr)
        order_gen = torch.Generator().manual_seed(seed)
        student.train()
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=order_gen)
            for start in range(0, x.shape[0], batch_size):
                idx = order[start:start + batch_size]
                if idx.numel() < 2 and x.shape[0] >= 2:  # a 1-row batch breaks BatchNorm
                    continue
                loss = F.cross_entropy(student(x[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return student.eval()


def knowledge_extraction(attack_images: torch.Tensor, attack_labels: torch.Tensor,
                         private_train: tuple[torch.Tensor, torch.Tensor],
                         private_test: tuple[torch.Tensor, torch.Tensor],
                         arch_name: str, num_classes: int, epochs: int, seed: int,
                         image_size: int | None = None, batch_size: int = 64) -> dict[str, float]:
    """{"kes_train", "kes_test"}: accuracy on the private train / test sets (each an (images, labels)
    pair) of a student `arch_name` trained for `epochs` only on the attack images.

    The student works at `image_size` (default: the private images' size). When fewer classes were
    attacked than exist, it can only ever predict the attacked ones; so the score is measured on the
    private images of the attacked classes only, where 1.0 stays reachable."""
    check_images(attack_images, "attack images")
    attack_labels = check_labels(attack_labels, attack_images.shape[0], num_classes, "attack labels")
    if attack_images.shape[0] < 2:
        raise ValueError(f"knowledge extraction needs at least 2 attack images, got {attack_images.shape[0]}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    sets = {"kes_train": private_train, "kes_test": private_test}
    for name, (imgs, labs) in sets.items():
        check_images(imgs, f"{name} images")
        check_labels(labs, imgs.shape[0], num_classes, f"{name} labels")
    size = image_size or private_train[0].shape[-1]
    student = train_student(attack_images, attack_labels, arch_name, num_classes, size, epochs, seed, batch_size)
    attacked = attack_labels.unique()
    out = {}
    for name, (imgs, labs) in sets.items():
        keep = torch.isin(labs, attacked)
        if not keep.any():
            raise ValueError(f"{name}: the private set holds no image of the attacked classes {attacked.tolist()}")
        out[name] = topk_accuracy(predict_logits(student, imgs[keep]), labs[keep].long(), 1)
    return out
