"""What the kernel tests share: the CUDA skip condition and the device list."""
import pytest
import torch

import lsmia_ext


def cuda_ready() -> bool:
    """CUDA tests need a GPU *and* a build that contains the CUDA kernels (a CPU-only build on a GPU
    host must skip them, not fail)."""
    return torch.cuda.is_available() and lsmia_ext.cuda_kernels_built()


CUDA = pytest.mark.skipif(not cuda_ready(), reason="needs an NVIDIA GPU and a build with the CUDA kernels")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])]
