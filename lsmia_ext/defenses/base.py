"""The Defense interface the trainer uses: change the architecture, watch the training forward, add a loss."""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

# DefenseConfig.kind -> the Defense class, built by its from_config(cfg)
DEFENSES: Registry[type["Defense"]] = Registry("defense")


@DEFENSES.register("none")
class Defense:
    """No defense; subclasses override what they need.

    wrap(model): the architecture change, applied both when training and when load_classifier rebuilds a
        checkpoint (so it must be deterministic at eval time and must keep forward / .features).
    attach(model): training-time instrumentation (forward hooks); never applied when loading for attacks.
    extra_loss(model, x, y, logits): scalar added to the label smoothing loss of the batch (per rank under
        DDP: every rank penalises its own shard, the gradients are averaged by DDP as usual).
    """

    kind = "none"

    @classmethod
    def from_config(cls, cfg) -> "Defense":
        """The defense a DefenseConfig describes."""
        return cls()

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def attach(self, model: nn.Module) -> None:
        return None

    def extra_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits.new_zeros((), dtype=torch.float32)
