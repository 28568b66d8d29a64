"""The C1 study (issue 22) end to end, the way experiment-fmnist-c1's rationale fixes it:

1. pilot: for k in (6, 8) (sub-classes per category, k/2 private), seed 0, only the hard-label entries
   (hard, hard_n25): stop at the first k whose 100-image hard-label attack has an identity-vs-category gap
   (attack Acc@1 in the right category minus attack Acc@1) of at least GAP; k = 8 if none does. The
   decision (with every pilot's gap and validation accuracy) goes to OUT/pilot.json before any
   positive-alpha target is trained;
2. the study at that k in two processes (even and odd seeds, one thread each), OUT/main and OUT/main-b,
   both starting from the pilot's prior, evaluation model and seed-0 hard-label stages (same hashes);
3. OUT/main-b's stages are copied into OUT/main and the full config is run there once more: every stage is
   reused, results.json and the report cover all seeds.
Every step reuses finished stages, so the command can be rerun after an interruption.

    OMP_NUM_THREADS=1 python bench/c1_study.py --out runs/c1
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
    args = parser.parse_args()
    out = args.out
    pilots: dict[int, dict] = {}
    for k in KS:
        run(out / f"pilot-k{k}", "--set", "seeds=[0]", "--set", f"targets={PILOT_TARGETS}", *k_sets(k))
        pilots[k] = pilot_row(json.loads((out / f"pilot-k{k}" / "results.json").read_text()))
        if pilots[k]["gap"] >= GAP:
            break
    k = choose_k(pilots)
    (out / "pilot.json").write_text(json.dumps({"rule": f"smallest k of {KS} with gap >= {GAP}", "pilots": pilots,
                                                "k": k}, indent=1))
    print(f"pilot: k = {k} ({pilots})", flush=True)
    from lsmia_ext.experiment import load_experiment_config

    seeds = load_experiment_config(CONFIG).seeds
    halves = {out / "main": seeds[0::2], out / "main-b": seeds[1::2]}
    for d in halves:
        copy_stages(out / f"pilot-k{k}", d)
    procs = [lsmia(d, "--set", f"seeds={s}", *k_sets(k)) for d, s in halves.items()]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("a half of the study failed; rerun the same command to resume")
    copy_stages(out / "main-b", out / "main", STAGES[2:])
    run(out / "main", *k_sets(k))
    print(f"done: {out / 'main'}/report.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
