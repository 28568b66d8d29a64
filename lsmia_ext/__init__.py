"""lsmia_ext: fused label-smoothing kernels and a toolkit to measure and defend against model inversion.

Public API (everything else is internal):
  fused_ls_ce, LabelSmoothingCrossEntropy, AlphaSchedule      -- the loss for any alpha <= 1
  fused_latent_adam_, LatentAdam                               -- batched latent optimiser step
"""
from ._C_loader import cpu_kernel_isa, cuda_kernels_built
from .losses import AlphaSchedule, LabelSmoothingCrossEntropy
from .ops import fused_latent_adam_, fused_ls_ce
from .optim import LatentAdam

__all__ = [
    "AlphaSchedule",
    "LabelSmoothingCrossEntropy",
    "LatentAdam",
    "cpu_kernel_isa",
    "cuda_kernels_built",
    "fused_latent_adam_",
    "fused_ls_ce",
]
__version__ = "0.1.0"
