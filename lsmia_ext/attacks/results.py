"""The per-batch result every attack returns, in the shape of RUN_DIR/results.pt."""
from __future__ import annotations

import torch
from torch import nn

from .config import AttackConfig
from .views import confidences

# initial_selection_images / _labels: PPA only (empty for the others), every candidate the initial
# selection kept (initial.keep per class), rendered before any optimisation, grouped by class. Results of
# earlier versions held `initial_images` instead: only the final samples' pre-optimisation images, which
# depend on what the final selection picked (metrics.evaluate still reads them, labelled as such).
RESULT_KEYS = ("images", "labels", "latents", "confidences", "initial_confidences", "initial_selection_images",
               "initial_selection_labels")


@torch.no_grad()
def render_all(render, latents: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Images of all latents without gradients, chunk by chunk."""
    return torch.cat([render(chunk) for chunk in latents.split(batch_size)])


def batch_result(cfg: AttackConfig, target: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 latents: torch.Tensor | None, initial_confidences: torch.Tensor | None, timings: dict,
                 initial_selection: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """CPU float32 tensors of one batch of classes plus its timings; confidences = final target
    confidence of each image for its attacked class (plain view, mirrored view averaged if hflip);
    initial_selection = (images, labels) of every candidate the initial selection kept (PPA)."""
    conf = confidences(target, images, cfg.hflip, cfg.score_batch_size).gather(1, labels[:, None]).squeeze(1)
    empty = torch.empty(0)
    return {
        "images": images.detach().float().clamp(0, 1).cpu(),
        "labels": labels.long().cpu(),
        "latents": empty if latents is None else latents.detach().float().cpu(),
        "confidences": conf.float().cpu(),
        "initial_confidences": empty if initial_confidences is None else initial_confidences.float().cpu(),
        "initial_selection_images": (empty if initial_selection is None
                                     else initial_selection[0].detach().float().clamp(0, 1).cpu()),
        "initial_selection_labels": (empty.long() if initial_selection is None
                                     else initial_selection[1].long().cpu()),
        "timings": timings,
    }
