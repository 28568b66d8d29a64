"""Which CPU kernel tables this machine can run, asked of the hardware (the flags in /proc/cpuinfo).

`make test-isa` forces each table with ATEN_CPU_CAPABILITY. torch then reports the forced table whether
the CPU has it or not (and dies with "Illegal instruction" in it, as on an AVX2-only AMD EPYC forced to
avx512), so torch cannot say which tables are safe to force; the CPU's flags can.

A table needs the flags of torch's own dispatch rule (ATen's DispatchStub: AVX2 = avx2 + fma; AVX512 =
avx512f/bw/vl/dq + fma) and of every instruction set setup.py lets the compiler use for this project's
table (its ISA_FLAGS; `lzcnt` is called `abm` in /proc/cpuinfo). test_cpu_isa.py keeps the two in step.
Without /proc/cpuinfo (not Linux) or on a CPU other than x86, only the default table is reported.

Run as a script it prints the tables, e.g. "default avx2 avx512"; with `--missing TABLE` it prints the
flags this CPU lacks for TABLE.
"""
from __future__ import annotations

import sys
from pathlib import Path

TABLES = ("default", "avx2", "avx512")
REQUIRED = {
    "default": frozenset(),
    "avx2": frozenset({"avx2", "fma", "f16c", "bmi1", "bmi2", "abm"}),
    "avx512": frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c"}),
}
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first processor in a /proc/cpuinfo text (x86 names the line 'flags')."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def missing(table: str, flags: frozenset[str]) -> list[str]:
    return sorted(REQUIRED[table] - flags)


def supported_tables(flags: frozenset[str]) -> list[str]:
    return [t for t in TABLES if not missing(t, flags)]


def this_cpu_flags() -> frozenset[str]:
    try:
        return cpu_flags(CPUINFO.read_text())
    except OSError:
        return frozenset()


def main(argv: list[str]) -> int:
    flags = this_cpu_flags()
    if argv[:1] == ["--missing"] and len(argv) == 2 and argv[1] in REQUIRED:
        print(" ".join(missing(argv[1], flags)))
    elif not argv:
        print(" ".join(supported_tables(flags)))
    else:
        print(f"usage: cpu_isa.py [--missing {{{','.join(TABLES)}}}]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
