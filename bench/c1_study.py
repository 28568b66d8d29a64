"""The C1 study (issue 22) end to end, the way experiment-fmnist-c1's rationale fixes it:

1. pilot: for k in (6, 8) (sub-classes per category, k/2 private), seed 0, only the hard-label entries
   (hard, hard_n25): stop at the first k whose 100-image hard-label attack has an identity-vs-category gap
   (attack Acc@1 in the right category minus attack Acc@1) of at least GAP; k = 8 if none does. The
   decision (with every pilot's gap and validation accuracy) goes to OUT/pilot.json before any
   positive-alpha target is trained;
2. the study at that k in OUT/main, starting from the pilot's prior, evaluation model and seed-0
   hard-label stages (same hashes), its stages on --workers local Dask workers (one thread each).
Every step reuses finished stages, so the command can be rerun after an interruption; --pilot-only stops
after step 1.

    OMP_NUM_THREADS=1 python bench/c1_study.py --out runs/c1 [--workers 2] [--pilot-only]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

CONFIG = "experiment-fmnist-c1"
KS = (6, 8)
GAP = 0.05
PILOT_TARGETS = "[{name: hard, alpha: 0.0}, {name: hard_n25, alpha: 0.0, set: {data: {train_per_class: 25}}}]"
STAGES = ("prior", "eval_model", "targets", "attacks", "evaluations")


def k_sets(k: int) -> list[str]:
    return ["--set", f"data.identities.per_category={k}", "--set", f"data.identities.private_per_category={k // 2}"]


def pilot_row(results: dict) -> dict:
    """The 100-image hard-label row of a pilot: its gap and validation accuracy."""
    row = next(r for r in results["rows"] if r["name"] == "hard")
    return {"attack_acc1": row["attack_acc1"], "attack_acc_category": row["attack_acc_category"],
            "gap": row["attack_acc_category"] - row["attack_acc1"], "val_acc": row["val_acc"],
            "test_acc": row["test_acc"]}


def choose_k(pilots: dict[int, dict]) -> int:
    """The smallest k of KS whose pilot gap is at least GAP; the largest k when none is (rationale)."""
    return next((k for k in KS if k in pilots and pilots[k]["gap"] >= GAP), KS[-1])


def lsmia(out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "import sys; from lsmia_ext.cli import main; sys.exit(main(sys.argv[1:]))",
           "experiment", "--config", CONFIG, "--out", str(out), *args]
    print("+", " ".join(cmd[3:]), flush=True)
    return subprocess.Popen(cmd)


def run(out: Path, *args: str) -> None:
    if lsmia(out, *args).wait() != 0:
        raise SystemExit(f"lsmia experiment --out {out} failed")


def copy_stages(src: Path, dst: Path, names=STAGES) -> None:
    for name in names:
        if (src / name).exists():
            shutil.copytree(src / name, dst / name, dirs_exist_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers for every run")
    parser.add_argument("--pilot-only", action="store_true", help="stop after the pilot's decision")
    args = parser.parse_args()
    out, workers = args.out, ["--workers", str(args.workers)]
    pilots: dict[int, dict] = {}
    for k in KS:
        run(out / f"pilot-k{k}", "--set", "seeds=[0]", "--set", f"targets={PILOT_TARGETS}", *k_sets(k), *workers)
        pilots[k] = pilot_row(json.loads((out / f"pilot-k{k}" / "results.json").read_text()))
        if pilots[k]["gap"] >= GAP:
            break
    k = choose_k(pilots)
    (out / "pilot.json").write_text(json.dumps({"rule": f"smallest k of {KS} with gap >= {GAP}", "pilots": pilots,
                                                "k": k}, indent=1))
    print(f"pilot: k = {k} ({pilots})", flush=True)
    if args.pilot_only:
        return 0
    copy_stages(out / f"pilot-k{k}", out / "main")
    run(out / "main", *k_sets(k), *workers)
    print(f"done: {out / 'main'}/report.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
