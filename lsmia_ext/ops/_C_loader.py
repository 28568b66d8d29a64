"""Loads the compiled extension (which registers the torch.ops.lsmia ops)."""
import torch  # first: _C links against torch's libc10 / libtorch, which torch's import loads

try:
    from .. import _C  # noqa: F401  (built by setup.py as lsmia_ext._C)
except ImportError as e:  # pragma: no cover - only when the package was not built
    raise ImportError(
        "lsmia_ext._C is missing or broken: build the package with `pip install --no-build-isolation .` "
        f"(see README.md). Original error: {e}") from e


def cuda_kernels_built() -> bool:
    """True when this build contains the CUDA kernels."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("lsmia::ls_ce_forward", "CUDA")


def cpu_kernel_isa() -> str:
    """Instruction set of the CPU kernels in use: DEFAULT, AVX2 or AVX512."""
    return torch.ops.lsmia.cpu_kernel_isa()
