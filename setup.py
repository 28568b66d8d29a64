"""Builds lsmia_ext._C: C++ CPU kernels always, CUDA kernels when nvcc and a CUDA torch exist.

Environment:
  LSMIA_CPU_ONLY=1   skip the CUDA kernels even when they could be built
  FORCE_CUDA=1       build the CUDA kernels and fail loudly if that is impossible
  CUDA_HOME          defaults to /usr/local/cuda when that folder exists (torch otherwise guesses
                     /usr/local from the nvcc wrapper on PATH and then cannot link cudart)
  TORCH_CUDA_ARCH_LIST  wins when set; otherwise the visible GPUs' architectures, or without a GPU
                     "8.0;9.0+PTX" (A100, H100 natively; the PTX is JIT-compiled on newer GPUs
                     such as Blackwell). Older GPUs (e.g. a T4, 7.5) need a build on that machine or
                     TORCH_CUDA_ARCH_LIST="7.5;8.0;9.0+PTX".

CPU kernels are compiled once per instruction set torch dispatches to (DEFAULT, AVX2, AVX512, the
files csrc/cpu/isa_*.cpp) and chosen at run time from torch's own CPU capability, so one build runs
on any x86-64 machine and uses the widest vectors the machine has.
"""
import glob
import os
import platform
import shutil

if os.path.isdir("/usr/local/cuda") and "CUDA_HOME" not in os.environ:
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


def cuda_arch_list(env, gpu_capabilities):
    """TORCH_CUDA_ARCH_LIST for this build: the user's, else the local GPUs' (PTX of the newest, so
    a later GPU can still JIT it), else DEFAULT_CUDA_ARCHS. `gpu_capabilities`: [(major, minor)]."""
    if env.get("TORCH_CUDA_ARCH_LIST"):
        return env["TORCH_CUDA_ARCH_LIST"]
    if gpu_capabilities:
        archs = sorted(set(gpu_capabilities))
        return ";".join(f"{a}.{b}" for a, b in archs) + "+PTX"
    return DEFAULT_CUDA_ARCHS


def visible_gpu_capabilities():
    import torch
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

X86 = platform.machine().lower() in ("x86_64", "amd64")
ISA_FLAGS = {
    "isa_default.cpp": ["-DCPU_CAPABILITY=DEFAULT", "-DCPU_CAPABILITY_DEFAULT"],
    "isa_avx2.cpp": ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c",
                     "-mbmi", "-mbmi2", "-mlzcnt"],
    "isa_avx512.cpp": ["-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512", "-mavx512f",
                       "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
}


def want_cuda():
    if os.environ.get("LSMIA_CPU_ONLY", "0") == "1":
        return False
    has_nvcc = CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    has_torch_cuda = torch.version.cuda is not None
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if not (has_nvcc and has_torch_cuda):
            raise RuntimeError(
                f"FORCE_CUDA=1 but the CUDA build is impossible: nvcc found={has_nvcc} "
                f"(CUDA_HOME={CUDA_HOME}), torch built with CUDA={has_torch_cuda} "
                f"(torch {torch.__version__})")
        return True
    return has_nvcc and has_torch_cuda


class IsaBuildExtension(BuildExtension):
    """Adds per-file instruction-set flags (setuptools only knows per-extension flags) and links the
    objects in link_order.

    Ninja compiles a whole extension with one flag set, so this build compiles file by file."""

    def __init__(self, *args, **kwargs):
        kwargs["use_ninja"] = False
        super().__init__(*args, **kwargs)

    def build_extension(self, ext):
        torch_compile = self.compiler._compile

        def compile_one(obj, src, ext_name, cc_args, extra_postargs, pp_opts):
            extra = ISA_FLAGS.get(os.path.basename(src))
            if extra:
                if isinstance(extra_postargs, dict):
                    extra_postargs = dict(extra_postargs, cxx=list(extra_postargs["cxx"]) + extra)
                else:
                    extra_postargs = list(extra_postargs) + extra
            torch_compile(obj, src, ext_name, cc_args, extra_postargs, pp_opts)

        torch_link = self.compiler.link

        def link_ordered(target_desc, objects, *args, **kwargs):
            return torch_link(target_desc, link_order(objects), *args, **kwargs)

        self.compiler._compile = compile_one
        self.compiler.link = link_ordered
        try:
            super().build_extension(ext)
        finally:
            self.compiler._compile = torch_compile
            self.compiler.link = torch_link


def nvidia_include_dirs():
    """Headers of the CUDA libraries shipped as pip wheels (e.g. cusparse.h) that torch headers may need."""
    try:
        import nvidia
    except ImportError:
        return []
    return sorted(d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "cu*", "include")))


def link_order(objects):
    """The linker keeps the first copy of an inline function that several objects define, and
    distutils sorts the sources by name; so objects compiled without -m flags go first, then DEFAULT,
    then AVX2 / AVX512: a helper they share by accident resolves to baseline code, never to AVX code
    called from the DEFAULT kernels (python_tests/test_isa_separation.py checks the result)."""
    rank = {os.path.splitext(name)[0]: i + 1 for i, name in enumerate(ISA_FLAGS)}
    return sorted(objects, key=lambda o: rank.get(os.path.splitext(os.path.basename(o))[0], 0))


def extension():
    here = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    if not X86:
        sources = [s for s in sources if os.path.basename(s) not in ("isa_avx2.cpp", "isa_avx512.cpp")]
    # -fno-wrapv undoes the -fwrapv of Python's own CFLAGS (which setuptools puts first): the kernels rely
    # on no signed overflow, and wrapping int64 index arithmetic costs the AVX2 training kernel ~10%.
    cxx = ["-O3", "-g0", "-fno-wrapv", "-std=c++20", "-fopenmp"] + ([] if X86 else ["-DLSMIA_NO_X86_ISA"])
    include_dirs = [os.path.join(here, "csrc")]
    # the headers hold most kernel code: an edited header makes build_ext rebuild (it compares sources only)
    depends = sorted(glob.glob(os.path.join(here, "csrc", "**", "*.h"), recursive=True)
                     + glob.glob(os.path.join(here, "csrc", "**", "*.cuh"), recursive=True))
    if want_cuda():
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        nvcc = ["-O3", "-std=c++20", "-DLSMIA_WITH_CUDA", "-lineinfo"]
        return CUDAExtension("lsmia_ext._C", sources, include_dirs=include_dirs + nvidia_include_dirs(),
                             extra_compile_args={"cxx": cxx + ["-DLSMIA_WITH_CUDA"], "nvcc": nvcc},
                             extra_link_args=["-fopenmp"], depends=depends)
    return CppExtension("lsmia_ext._C", sources, include_dirs=include_dirs,
                        extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"], depends=depends)


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import its helpers
    if shutil.which("c++") is None and shutil.which("g++") is None:
        raise RuntimeError("lsmia needs a C++20 compiler (g++); install it with: apt-get install g++")
    if want_cuda():
        os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_arch_list(os.environ, visible_gpu_capabilities())
        print(f"lsmia: CUDA architectures {os.environ['TORCH_CUDA_ARCH_LIST']}")
    setup(ext_modules=[extension()], cmdclass={"build_ext": IsaBuildExtension})
