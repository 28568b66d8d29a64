"""Python bindings of the torch.ops.lsmia custom ops: argument checks, fake kernels, autograd."""
from .ls_ce import fused_ls_ce

__all__ = ["fused_ls_ce"]
