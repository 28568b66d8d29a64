"""What the tests share: `lsmia(*argv)` (the command line in-process: exit code, stdout, stderr),
`digits_cfg(*KEY=VALUE)` (the 8x8 digits target recipe, one thread), `torchrun_train(out, *KEY=VALUE)`
(`lsmia train` on 2 gloo ranks) and PACKAGE_ROOT. Import them with `from conftest import ...`."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import lsmia_ext

# the folder holding the lsmia_ext that the tests import (source tree in development, site-packages in CI)
PACKAGE_ROOT = Path(lsmia_ext.__file__).resolve().parents[1]


class CliResult(NamedTuple):
    code: int
    out: str
    err: str


def lsmia(*argv) -> CliResult:
    """`lsmia ARGV` through lsmia_ext.cli.main, as a user types it (overrides parsed, errors caught)."""
    from lsmia_ext.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return CliResult(code, out.getvalue(), err.getvalue())


def digits_cfg(*overrides: str):
    """The digits target recipe (train-digits-target) on one thread, with `--set`-style overrides."""
    from lsmia_ext.config import load_config, parse_overrides
    from lsmia_ext.train import TrainConfig

    return load_config(TrainConfig, "train-digits-target", parse_overrides(["num_threads=1", *overrides]))


def torchrun_train(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`lsmia train --config train-digits-target` on 2 ranks (gloo), one thread each."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "lsmia_ext.train", "--config", "train-digits-target", "--out", str(out),
           "--set", "num_threads=1", *[a for o in overrides for a in ("--set", o)]]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
