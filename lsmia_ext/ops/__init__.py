"""Python bindings of the torch.ops.lsmia custom ops: argument checks, fake kernels, autograd."""
from .latent_adam import fused_latent_adam_
from .ls_ce import fused_ls_ce

__all__ = ["fused_latent_adam_", "fused_ls_ce"]
