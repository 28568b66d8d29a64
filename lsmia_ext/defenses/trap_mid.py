"""Trap-MID (Liu et al., NeurIPS 2024, "Trap-MID: Trapdoor-based Defense against Model Inversion Attacks"),
as the authors' code trains it: a trapdoor per class, so that an inversion attack finds the trigger
instead of the private features.

Per class c a trigger t_c (C, H, W), drawn uniform in [0, 1] at the start (the authors' torch.rand).
Every training batch of B images is fed together with B triggered copies x' = alpha t_k + (1 - alpha) x,
the trapdoor labels k spread evenly over the classes (the authors: an even spread over the epoch), in one
forward (BatchNorm sees both halves, as in the authors' concatenated batch); the loss is
(1 - beta) LS(clean, y) + beta LS(triggered, k), LS being the run's label smoothing loss (the authors'
trapdoor criterion defaults to the main one). Before each model step the triggers take one signed
gradient step of size `step` on the trapdoor cross-entropy with the model in eval mode, clamped to [0, 1]
(the authors' "optimized" triggers). Authors' settings (CelebA and MNIST configs): alpha 0.02, beta 0.2,
step 0.01. The dials are beta (how much of the loss is the trapdoor's) and alpha (how visible the trigger
is). The model's architecture and evaluation forward are unchanged; it needs no particular layer.

Differences from the authors' code, and why:
- No trigger discriminator. The authors' default configs also train a discriminator (a second network
  of the target's architecture) whose loss keeps triggered images looking natural. It doubles the cost of
  every step, which this CPU-bound study cannot pay for every target; the trapdoor itself (triggers,
  blending, injection of every image, the beta-weighted loss, the trigger updates) is the authors'.
  Without it the triggers are only pushed towards what the model recognises, which makes them easier for
  an attacker to find (the defense's mechanism), not harder.
- The trigger step uses the trapdoor cross-entropy with hard labels; under torchrun the trigger
  gradient is averaged over the ranks before its sign is taken, so every rank keeps the same triggers.
- Triggers are blended after the recipe's augmentation (the authors augment the triggered image with
  crops, flips and rotations that they enable only with trapdoors; the study's recipe has flips only).
- Training protocol: the study's recipe for every target (train-fmnist-target), so only the defense
  differs, and the last epoch is kept; the authors keep the epoch with the best test accuracy.
- Trapdoor labels: an even spread within each batch (random offset, then shuffled) from the trainer's
  per-(seed, epoch, rank) defense stream.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .base import DEFENSES, Defense


def blend(x: torch.Tensor, key: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * key + (1 - alpha) * x: the trigger blended into the image."""
    return alpha * key + (1.0 - alpha) * x


def trapdoor_labels(n: int, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """n labels in 0..K-1, each class floor(n / K) or ceil(n / K) times, in random order."""
    offset = int(torch.randint(num_classes, (1,), generator=gen))
    labels = (torch.arange(n) + offset) % num_classes
    return labels[torch.randperm(n, generator=gen)]


@DEFENSES.register("trap_mid")
class TrapMID(Defense):
    kind = "trap_mid"

    @classmethod
    def from_config(cls, cfg) -> "TrapMID":
        return cls(cfg.trap_alpha, cfg.trap_beta, cfg.trap_step)

    def __init__(self, alpha: float = 0.02, beta: float = 0.2, step: float = 0.01):
        for name, v, ok, allowed in (("trap_alpha", alpha, 0 < alpha < 1, "(0, 1)"),
                                     ("trap_beta", beta, 0 < beta < 1, "(0, 1)"),
                                     ("trap_step", step, 0 <= step <= 1, "[0, 1]")):
            if not ok:
                raise ValueError(f"Trap-MID {name} must lie in {allowed}, got {v}")
        self.alpha, self.beta, self.step = alpha, beta, step
        self.triggers: Optional[torch.Tensor] = None

    def prepare(self, model, scenario, ctx) -> dict:
        self.triggers = torch.rand(model.num_classes, model.in_channels, model.image_size, model.image_size,
                                   generator=ctx.gen).to(ctx.device)
        return {}

    @torch.no_grad()
    def trapdoor_accuracy(self, model, images: torch.Tensor, batch_size: int = 1000) -> float:
        """Share of `images` (float, on the model's device) that the model, in eval mode, assigns to the class
        of the trigger blended into them (classes spread evenly: image i gets trigger i mod K)."""
        was_training = model.training
        model.eval()
        try:
            k = torch.arange(len(images), device=images.device) % self.triggers.shape[0]
            keys = self.triggers.to(images.device)
            hits = sum((model(blend(x, keys[kk], self.alpha)).argmax(1) == kk).sum().item()
                       for x, kk in zip(images.split(batch_size), k.split(batch_size)))
        finally:
            model.train(was_training)
        return hits / max(len(images), 1)

    def final_metrics(self, model, scenario, cfg, device) -> dict:
        """trapdoor_acc: on the private test images (the trapdoor an attacker would find; chance 1 / K)."""
        images = scenario.tensors("private_test")[0].to(device)
        return {"trapdoor_acc": self.trapdoor_accuracy(model, images, cfg.eval_batch_size)}

    def state_dict(self) -> dict:
        return {"triggers": self.triggers.cpu()} if self.triggers is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.triggers = state["triggers"]

    def _update_triggers(self, model, x: torch.Tensor, labels: torch.Tensor) -> None:
        """One signed gradient step on the trapdoor cross-entropy, model in eval mode, clamped to [0, 1]."""
        was_training = model.training
        model.eval()
        try:
            trig = self.triggers.clone().requires_grad_(True)
            loss = F.cross_entropy(model(blend(x, trig[labels], self.alpha)).float(), labels)
            (grad,) = torch.autograd.grad(loss, trig)
        finally:
            model.train(was_training)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(grad)
        self.triggers = (self.triggers - self.step * grad.sign()).clamp(0.0, 1.0)

    def train_batch(self, model, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
        if self.triggers is None:
            raise RuntimeError("Trap-MID.train_batch needs its triggers: call prepare (or load_state_dict) first")
        self.triggers = self.triggers.to(x.device)
        labels = trapdoor_labels(len(x), self.triggers.shape[0], gen).to(x.device)
        if self.step > 0:
            self._update_triggers(model, x, labels)
        return torch.cat([x, blend(x, self.triggers[labels], self.alpha)]), torch.cat([y, labels])

    def loss(self, loss_fn, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = len(y) // 2
        return (1.0 - self.beta) * loss_fn(logits[:n], y[:n]) + self.beta * loss_fn(logits[n:], y[n:])
