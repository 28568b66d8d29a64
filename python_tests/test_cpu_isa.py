"""cpu_isa: which kernel tables `make test-isa` may force, read from the CPU's flags, not from torch."""
import ast
import os
import platform
from pathlib import Path

import pytest
import torch

import cpu_isa
from cpu_isa import REQUIRED, cpu_flags, missing, supported_tables

COMMON = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 "
          "ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl pni pclmulqdq ssse3 cx16 sse4_1 sse4_2 "
          "x2apic popcnt aes xsave avx")
# An AMD EPYC 7763 (Zen 3): AVX2, no AVX-512.
EPYC = COMMON + (" fma movbe f16c rdrand lahf_lm cmp_legacy svm abm sse4a misalignsse 3dnowprefetch topoext "
                 "fsgsbase bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt "
                 "xsavec vaes vpclmulqdq rdpid fsrm")
# An Intel Xeon Platinum 8175M (Skylake-SP).
XEON = COMMON + (" fma movbe f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase bmi1 hle avx2 smep bmi2 "
                 "erms invpcid rtm mpx avx512f avx512dq rdseed adx smap clflushopt clwb avx512cd avx512bw "
                 "avx512vl xsaveopt xsavec xgetbv1 xsaves pku ospke")
# A Xeon Phi 7210 (Knights Landing): avx512f without bw/vl/dq, which torch's AVX512 table needs.
KNL = COMMON + " fma movbe f16c abm bmi1 avx2 bmi2 erms avx512f avx512pf avx512er avx512cd"
# A Xeon E5-2670 (Sandy Bridge): AVX but neither AVX2 nor FMA.
SANDY = COMMON + " lahf_lm hypervisor xsaveopt"


def cpuinfo(flags):
    return f"processor\t: 0\nvendor_id\t: X\nflags\t\t: {flags}\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\n"


@pytest.mark.parametrize("flags, tables", [
    (EPYC, ["default", "avx2"]),
    (XEON, ["default", "avx2", "avx512"]),
    (KNL, ["default", "avx2"]),
    (SANDY, ["default"]),
    ("", ["default"]),  # no flags line (another architecture): the default table only
])
def test_tables_from_faked_cpuinfo(flags, tables):
    assert supported_tables(cpu_flags(cpuinfo(flags))) == tables


def test_missing_names_the_flags():
    assert missing("avx512", cpu_flags(cpuinfo(EPYC))) == ["avx512bw", "avx512dq", "avx512f", "avx512vl"]
    assert missing("avx2", cpu_flags(cpuinfo(SANDY))) == ["abm", "avx2", "bmi1", "bmi2", "f16c", "fma"]
    assert "flags" not in cpu_flags(cpuinfo(EPYC)) and "bugs" not in cpu_flags(cpuinfo(EPYC))


def _setup_isa_flags():
    """setup.py's ISA_FLAGS, read without running setup.py."""
    tree = ast.parse((Path(__file__).parents[1] / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "ISA_FLAGS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no ISA_FLAGS")


def test_required_flags_cover_the_build_and_torch():
    cpuinfo_name = {"bmi": "bmi1", "lzcnt": "abm"}  # gcc's -m names that /proc/cpuinfo spells otherwise
    isa_flags = _setup_isa_flags()
    for table in cpu_isa.TABLES:
        compiled = {cpuinfo_name.get(f[2:], f[2:]) for f in isa_flags[f"isa_{table}.cpp"] if f.startswith("-m")}
        assert compiled <= REQUIRED[table], table
    assert {"avx2", "fma"} <= REQUIRED["avx2"]  # torch's own dispatch rule
    assert {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"} <= REQUIRED["avx512"]


@pytest.mark.skipif("ATEN_CPU_CAPABILITY" in os.environ, reason="torch reports the forced table")
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 tables only")
def test_this_cpu_agrees_with_torch(capsys):
    """Unforced, torch picks the best table the hardware has: the last one cpu_isa reports here."""
    assert cpu_isa.main([]) == 0
    tables = capsys.readouterr().out.split()
    assert tables[-1].upper() == torch.backends.cpu.get_cpu_capability()
