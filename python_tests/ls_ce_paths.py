"""The three ways fused_ls_ce runs a training step on the CPU, for tests that must hold on each:
"fast" (eager, logits require grad: _LsCeTrain, the gradient computed in the forward), "op" (the
custom ops ls_ce_forward / ls_ce_backward with their registered autograd, which torch.compile and
CUDA use; here through torch.compile with the eager backend) and "inplace" (inplace=True)."""
import torch

from lsmia_ext import fused_ls_ce

_compiled = torch.compile(fused_ls_ce, backend="eager", fullgraph=True, dynamic=False)


def fused(path):
    """fused_ls_ce(logits, target, alpha, **kw) on `path`. For "inplace" the logits must be 2-D and
    produced by an op (not a leaf)."""
    if path == "fast":
        return fused_ls_ce
    if path == "op":
        return _compiled
    return lambda logits, target, alpha=0.0, **kw: fused_ls_ce(logits, target, alpha, inplace=True, **kw)


PATHS = ["fast", "op", "inplace"]
