"""`lsmia experiment` sequential against `--workers N`, side by side on this machine (issue 21).

Runs the same study twice, one after the other, from scratch (fresh run directories), first in one
process, then on N local Dask workers, and writes OUT/timing.md: wall time and CPU seconds of each run
(the CPU of the driver and every child process, from getrusage), their ratio, and whether the same numbers
came out: results.json rows equal (every field but timings), claims equal, and every target's state dict
bit-identical (same code, same seeds, same thread count on the same machine: nothing may differ).
Both runs' results.json are copied to OUT. Run it on a quiet machine: anything else running skews both.

    OMP_NUM_THREADS=1 python bench/workers_timing.py --out runs/timing [--workers 2] -- \
        --config experiment-fmnist --seeds 5 --set 'targets=[...]'
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from lsmia_ext.runio import load_checkpoint


def run(out: Path, args: list[str]) -> dict:
    cmd = [sys.executable, "-c", "import sys; from lsmia_ext.cli import main; sys.exit(main(sys.argv[1:]))",
           "experiment", "--out", str(out), *args]
    print("+", " ".join(cmd[3:]), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime}


def same_weights(a: Path, b: Path) -> tuple[int, list[str]]:
    """How many targets were compared, and the names of those whose state dicts differ."""
    names = sorted(p.name for p in (a / "targets").iterdir() if (p / "model.pt").exists())
    differ = []
    for name in names:
        sa, sb = (load_checkpoint(d / "targets" / name / "model.pt")["model"] for d in (a, b))
        # bit-equality is the claim here: the same code ran with the same seeds and threads on one machine
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
            differ.append(name)
    return len(names), differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shared-from", type=Path, default=None, metavar="RUN_DIR",
                        help="copy this run's prior and eval_model into both runs first (reused by hash: the timing "
                             "then covers the per-seed chains only)")
    parser.add_argument("experiment_args", nargs=argparse.REMAINDER, help="after --: lsmia experiment's arguments")
    args = parser.parse_args()
    extra = [a for a in args.experiment_args if a != "--"]
    seq, par = args.out / "sequential", args.out / f"workers{args.workers}"
    for d in (seq, par):
        if d.exists():
            raise SystemExit(f"{d} exists: the timing needs fresh run directories (remove it)")
    args.out.mkdir(parents=True, exist_ok=True)
    for d in (seq, par) if args.shared_from else ():
        for stage in ("prior", "eval_model"):
            shutil.copytree(args.shared_from / stage, d / stage)
    times = {"sequential": run(seq, extra), f"--workers {args.workers}": run(par, [*extra, "--workers",
                                                                                   str(args.workers)])}
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (seq, par))
    for d, name in ((seq, "sequential"), (par, f"workers{args.workers}")):
        shutil.copy(d / "results.json", args.out / f"results-{name}.json")
    n, differ = same_weights(seq, par)
    ratio = times[f"--workers {args.workers}"]["wall_s"] / times["sequential"]["wall_s"]
    lines = [f"# `--workers {args.workers}` against sequential, side by side",
             "", f"`lsmia experiment {' '.join(extra)}`, run twice from scratch, one after the other "
             f"(bench/workers_timing.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})"
             + (f"; prior and evaluation model copied in from {args.shared_from} (reused by hash)."
                if args.shared_from else "."), "",
             "| run | wall s | user CPU s | sys s |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['wall_s']:.1f} | {v['user_s']:.1f} | {v['sys_s']:.1f} |" for k, v in times.items()]
    lines += ["", f"Ratio: {ratio:.2f}x the sequential wall time.",
              f"Same numbers out: results.json rows equal ({len(ra['rows'])} rows: {ra['rows'] == rb['rows']}), "
              f"claims equal ({ra['claims'] == rb['claims']}); {n - len(differ)} of {n} targets' state dicts "
              f"bit-identical{'' if not differ else ' (differ: ' + ', '.join(differ) + ')'}."]
    (args.out / "timing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ra["rows"] == rb["rows"] and not differ else 1


if __name__ == "__main__":
    raise SystemExit(main())
