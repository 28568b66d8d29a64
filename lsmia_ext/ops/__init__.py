"""Everything Python about the kernels of lsmia_ext._C (the torch.ops.lsmia custom ops).

    _C_loader.py     loads the compiled extension; cuda_kernels_built, cpu_kernel_isa
    ls_ce.py         fused_ls_ce: argument checks, fake kernels, autograd
    latent_adam.py   fused_latent_adam_: the same for the batched Adam step
    loss.py          LabelSmoothingCrossEntropy, the nn.Module over fused_ls_ce
    optim.py         LatentAdam, the torch.optim.Optimizer over fused_latent_adam_
    reference.py     plain-PyTorch references of both ops (what the tests compare against)
    demo.py          `lsmia demo-loss`
Argument checks live where they are needed once: values the C++ op checks with a clear message
(alpha, betas, eps, ...) are not checked again here; what must be valid before the op runs (shapes
to reshape, the lr rows built here) is checked in Python.
"""
from ._C_loader import cpu_kernel_isa, cuda_kernels_built
from .latent_adam import fused_latent_adam_
from .loss import LabelSmoothingCrossEntropy
from .ls_ce import fused_ls_ce
from .optim import LatentAdam
from .reference import latent_adam_reference, ls_ce_reference

__all__ = ["LabelSmoothingCrossEntropy", "LatentAdam", "cpu_kernel_isa", "cuda_kernels_built", "fused_latent_adam_",
           "fused_ls_ce", "latent_adam_reference", "ls_ce_reference"]
