"""The Defense interface the trainer uses: change the architecture, watch the training forward, change a
training batch, add a loss, and prepare the model once before training."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..registry import Registry

# DefenseConfig.kind -> the Defense class, built by its from_config(cfg)
DEFENSES: Registry[type["Defense"]] = Registry("defense")


@dataclass
class PrepareContext:
    """What Defense.prepare gets from the trainer besides the model and the scenario: the TrainConfig, the
    device, a generator seeded from the run's seed for the defense's one-off draws, and the trainer's
    supervised pretraining loop, pretrain(model, train, test, num_classes, epochs, lr) -> metrics
    (train/pretrain.py; handed in so that defenses do not import the trainer, which imports them)."""

    cfg: Any
    device: torch.device
    gen: torch.Generator
    pretrain: Callable[..., dict]


@DEFENSES.register("none")
class Defense:
    """No defense; subclasses override what they need.

    check_config(train_cfg, build): classmethod, raises ValueError (one line naming the field and the
        allowed values) when the defense cannot run with this TrainConfig; build() returns a fresh model of
        the configured architecture (for checks on its layers). Runs when the config is validated, so a bad
        combination is refused before anything is written.
    wrap(model): the architecture change, applied both when training and when load_classifier rebuilds a
        checkpoint (so it must be deterministic at eval time and must keep forward / .features).
    prepare(model, scenario, ctx: PrepareContext): once, on a fresh run (not when resuming from a checkpoint),
        before attach and before the optimiser exists (TL-DMI pretrains here, Trap-MID draws its triggers);
        returns metrics to record in the run's final metrics ({} for none).
    attach(model): training-time instrumentation (forward hooks, frozen layers); never applied when loading
        for attacks.
    train_batch(model, x, y, gen): the training batch the model is fed, after augmentation, on the device
        (random erasing changes x, Trap-MID appends triggered copies); never applied at evaluation.
    loss(loss_fn, logits, y): the batch's label smoothing loss (Trap-MID weighs its two halves).
    extra_loss(model, x, y, logits): scalar added to the loss of the batch (per rank under DDP: every rank
        penalises its own shard, the gradients are averaged by DDP as usual).
    final_metrics(model, scenario, cfg, device): metrics of the trained model that only this defense has
        (Trap-MID: trapdoor accuracy), added to the run's final metrics.
    state_dict() / load_state_dict(state): training state that is not the model's (Trap-MID's triggers),
        saved with every epoch's checkpoint so that a resumed run continues it.
    """

    kind = "none"

    @classmethod
    def from_config(cls, cfg) -> "Defense":
        """The defense a DefenseConfig describes."""
        return cls()

    @classmethod
    def check_config(cls, train_cfg, build: Callable[[], nn.Module]) -> None:
        return None

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def prepare(self, model: nn.Module, scenario, ctx: PrepareContext) -> dict:
        return {}

    def attach(self, model: nn.Module) -> None:
        return None

    def train_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def loss(self, loss_fn, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(logits, y)

    def extra_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits.new_zeros((), dtype=torch.float32)

    def final_metrics(self, model: nn.Module, scenario, cfg, device: torch.device) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None
