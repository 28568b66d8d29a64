"""How the extension is built: instruction sets kept apart, CUDA architectures, CUDA test skipping."""
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from unittest import mock

import pytest
import torch

import lsmia_ext
from lsmia_ext import _C

import kernel_utils

SETUP_PY = Path(__file__).resolve().parents[1] / "setup.py"
FUNCTION = re.compile(r"^[0-9a-f]+ <(\S+)>:$")
REFERENCE = re.compile(r"<([^>+@]+)(?:\+0x[0-9a-f]+)?>")


def disassemble(path):
    """{mangled function: (instruction lines, referenced symbols)} of a shared object."""
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(path)], check=True, capture_output=True,
                          text=True).stdout
    functions, current = {}, None
    for line in text.splitlines():
        m = FUNCTION.match(line)
        if m:
            current = functions.setdefault(m.group(1), ([], set()))
            continue
        if current is None or ":\t" not in line:
            continue
        insn = line.split(":\t", 1)[1].strip()
        current[0].append(insn)
        current[1].update(REFERENCE.findall(insn))
    return functions


def uses_vex(insn):
    mnemonic = insn.split()[0] if insn else ""
    return (mnemonic.startswith("v") and mnemonic not in ("verr", "verw")) or "%ymm" in insn or "%zmm" in insn


def reachable(functions, roots):
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        todo.extend(functions[name][1])
    return seen


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or shutil.which("objdump") is None,
                    reason="needs x86-64 and objdump (binutils)")
def test_default_kernels_reach_no_avx_instruction():
    """Everything the DEFAULT kernel table can call inside _C (direct calls, jumps and the function
    addresses it takes, e.g. parallel_for callbacks) is free of VEX / EVEX code, so the DEFAULT path
    runs on a pre-AVX CPU; the AVX2 table, checked the same way, does use VEX (the check works)."""
    functions = disassemble(_C.__file__)
    by_isa = defaultdict(list)
    for name in functions:
        for isa in ("DEFAULT", "AVX2", "AVX512"):
            if f"5lsmia3cpu{len(isa)}{isa}" in name:
                by_isa[isa].append(name)
    assert by_isa["DEFAULT"] and by_isa["AVX2"], "kernel symbols not found"
    offenders = sorted(f for f in reachable(functions, by_isa["DEFAULT"]) if any(map(uses_vex, functions[f][0])))
    assert not offenders, f"DEFAULT kernels reach AVX code: {offenders[:5]}"
    assert any(any(map(uses_vex, functions[f][0])) for f in reachable(functions, by_isa["AVX2"]))


def load_setup_helpers():
    if not SETUP_PY.exists():
        pytest.skip("setup.py not next to the tests (installed package)")
    spec = importlib.util.spec_from_file_location("lsmia_setup", SETUP_PY)
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ):  # setup.py sets CUDA_HOME for the build
        spec.loader.exec_module(module)
    return module


def test_cuda_arch_list_local_gpu_else_portable_default():
    s = load_setup_helpers()
    assert s.cuda_arch_list({}, []) == "8.0;9.0+PTX"  # no GPU: sm_80, sm_90 and PTX for newer GPUs
    assert s.cuda_arch_list({}, [(7, 5)]) == "7.5+PTX"  # a T4 builds for itself
    assert s.cuda_arch_list({}, [(12, 0), (9, 0), (9, 0)]) == "9.0;12.0+PTX"
    assert s.cuda_arch_list({"TORCH_CUDA_ARCH_LIST": "8.6"}, [(9, 0)]) == "8.6"  # the user's choice wins


def test_an_edited_header_rebuilds_the_kernels():
    """build_ext compares only the sources with the built module; most kernel code is in headers."""
    depends = {Path(p).name for p in load_setup_helpers().extension().depends}
    assert {"ls_ce_kernel.h", "vec_util.h", "ls_ce_math.h", "latent_adam_math.h"} <= depends


def test_link_order_puts_baseline_objects_before_avx_ones():
    s = load_setup_helpers()
    objs = ["b/isa_avx2.o", "b/dispatch.o", "b/isa_avx512.o", "b/isa_default.o", "b/ls_ce.o", "b/ls_ce.cuda.o"]
    assert s.link_order(objs) == ["b/dispatch.o", "b/ls_ce.o", "b/ls_ce.cuda.o", "b/isa_default.o",
                                  "b/isa_avx2.o", "b/isa_avx512.o"]


def test_cuda_tests_skip_when_the_kernels_were_not_built(monkeypatch):
    """A CPU-only build on a GPU host: the CUDA tests must skip, not fail (issue 12, item 9)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(lsmia_ext, "cuda_kernels_built", lambda: False)
    assert not kernel_utils.cuda_ready()
    monkeypatch.setattr(lsmia_ext, "cuda_kernels_built", lambda: True)
    assert kernel_utils.cuda_ready()
