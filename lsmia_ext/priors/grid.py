"""Sample grids as PNG (written atomically through runio.save_figure)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..runio import save_figure


def save_grid(path: Path, images: torch.Tensor, nrow: int = 8, title: str | None = None) -> Path:
    """images: [0, 1] (B, C, H, W) -> one PNG grid, grey maps for 1 channel, 2 px separators."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1.0)
    rows, cols = grid.shape[1:]
    fig = plt.figure(figsize=(cols / 40, rows / 40))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if images.shape[1] == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return save_figure(Path(path), fig)
