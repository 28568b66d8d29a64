"""The per-batch result every attack returns, in the shape of RUN_DIR/results.pt."""
from __future__ import annotations

import torch
from torch import nn

from .config import AttackConfig
from .views import confidences

# initial_images: PPA only (empty for the others), the final samples as rendered from their latents
# before optimisation, row for row beside `images`.
RESULT_KEYS = ("images", "labels", "latents", "confidences", "initial_confidences", "initial_images")


@torch.no_grad()
def render_all(render, latents: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Images of all latents without gradients, chunk by chunk."""
    return torch.cat([render(chunk) for chunk in latents.split(batch_size)])


def batch_result(cfg: AttackConfig, target: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 latents: torch.Tensor | None, initial_confidences: torch.Tensor | None, timings: dict,
                 initial_images: torch.Tensor | None = None) -> dict:
    """CPU float32 tensors of one batch of classes plus its timings; confidences = final target
    confidence of each image for its attacked class (plain view, mirrored view averaged if hflip)."""
    conf = confidences(target, images, cfg.hflip, cfg.score_batch_size).gather(1, labels[:, None]).squeeze(1)
    empty = torch.empty(0)
    return {
        "images": images.detach().float().clamp(0, 1).cpu(),
        "labels": labels.long().cpu(),
        "latents": empty if latents is None else latents.detach().float().cpu(),
        "confidences": conf.float().cpu(),
        "initial_confidences": empty if initial_confidences is None else initial_confidences.float().cpu(),
        "initial_images": empty if initial_images is None else initial_images.detach().float().clamp(0, 1).cpu(),
        "timings": timings,
    }
