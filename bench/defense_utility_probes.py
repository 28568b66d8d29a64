"""Short utility probes for choosing defense sweep grids (test accuracy only, never an attack).

Trains train-fmnist-target for a few epochs per setting (the same shortened recipe for every defense:
cosine LR over the short run, negative alpha's warm-up and ramp scaled by the same factor) and appends
one JSON line per setting to --out. Usage (1 thread, a few minutes per setting on 2 shared cores):

    python bench/defense_utility_probes.py --epochs 8 --out /tmp/probes.jsonl \
        none mid:0.01 bido:0.05:0.5 ls:-0.05
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from lsmia_ext.config import load_config
from lsmia_ext.train import TrainConfig, train_classifier


def overrides_of(setting: str, epochs: int) -> list[str]:
    """none | mid:BETA | bido:LX:LY | ls:ALPHA -> TrainConfig overrides."""
    kind, *vals = setting.split(":")
    if kind == "none":
        return []
    if kind == "mid":
        return ["defense.kind=mid", f"defense.beta={vals[0]}"]
    if kind == "bido":
        return ["defense.kind=bido", f"defense.lambda_x={vals[0]}", f"defense.lambda_y={vals[1]}"]
    if kind == "ls":  # the full recipe's 15 + 7 of 30 epochs, scaled to the probe's length
        return [f"loss.alpha={vals[0]}", f"loss.warmup={round(epochs * 15 / 30)}", f"loss.ramp={round(epochs * 7 / 30)}"]
    raise ValueError(f"unknown setting {setting!r}: use none, mid:BETA, bido:LX:LY or ls:ALPHA")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    for setting in args.settings:
        cfg = load_config(TrainConfig, "train-fmnist-target",
                          ["num_threads=1", f"epochs={args.epochs}", f"seed={args.seed}", *overrides_of(setting, args.epochs)])
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            final = train_classifier(cfg, tmp)
        row = {"setting": setting, "epochs": args.epochs, "seed": args.seed, "test_acc": final["test_acc"],
               "train_acc": final["train_acc"], "wall_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
