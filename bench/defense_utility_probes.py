"""Short utility probes for choosing defense grids and control arms (accuracy only, never an attack).

Trains train-fmnist-target for a few epochs per setting (the same shortened recipe for every defense:
cosine LR over the short run, negative alpha's warm-up and ramp scaled by the same factor) and appends
one JSON line per setting to --out: validation accuracy (what choices are made on; --val-per-class images
per identity that no stage trains on), test and training accuracy. Usage (1 thread, a few minutes per
setting on 2 shared cores):

    python bench/defense_utility_probes.py --epochs 8 --out /tmp/probes.jsonl \
        none mid:0.01 bido:0.05:0.5 ls:-0.05 train:4 model:small_cnn_w4 tl_dmi:2 erase:0.4 trap:0.2
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from lsmia_ext.config import load_config, parse_overrides
from lsmia_ext.train import TrainConfig, train_classifier


def overrides_of(setting: str, epochs: int) -> list[str]:
    """Settings joined by '+' combine (e.g. model:small_cnn_w2+train:15)."""
    return [o for part in setting.split("+") for o in _overrides_of_one(part, epochs)]


def _overrides_of_one(setting: str, epochs: int) -> list[str]:
    """none | mid:BETA | bido:LX:LY | ls:ALPHA | train:EPOCHS[:LR] (hard labels, that many epochs, cosine
    over them, optionally another learning rate) | model:NAME (hard labels, another registered model) |
    tl_dmi:FROZEN_LAYERS[:PRETRAIN_EPOCHS] | erase:HIGH[:P] (random erasing, area fraction U[0.1, HIGH]) |
    trap:BETA[:ALPHA] (Trap-MID) | set:KEY=VALUE -> TrainConfig overrides."""
    kind, *vals = setting.split(":")
    if kind == "none":
        return []
    if kind == "mid":
        return ["defense.kind=mid", f"defense.beta={vals[0]}"]
    if kind == "bido":
        return ["defense.kind=bido", f"defense.lambda_x={vals[0]}", f"defense.lambda_y={vals[1]}"]
    if kind == "ls":  # the full recipe's 15 + 7 of 30 epochs, scaled to the probe's length
        return [f"loss.alpha={vals[0]}", f"loss.warmup={round(epochs * 15 / 30)}", f"loss.ramp={round(epochs * 7 / 30)}"]
    if kind == "train":
        return [f"epochs={vals[0]}", *([f"optim.lr={vals[1]}"] if len(vals) > 1 else [])]
    if kind == "model":
        return [f"model.name={vals[0]}"]
    if kind == "tl_dmi":
        return ["defense.kind=tl_dmi", f"defense.freeze_layers={vals[0]}",
                *([f"defense.pretrain_epochs={vals[1]}"] if len(vals) > 1 else [])]
    if kind == "erase":
        return ["defense.kind=random_erasing", f"defense.erase_scale=[0.1,{vals[0]}]",
                *([f"defense.erase_p={vals[1]}"] if len(vals) > 1 else [])]
    if kind == "trap":
        return ["defense.kind=trap_mid", f"defense.trap_beta={vals[0]}",
                *([f"defense.trap_alpha={vals[1]}"] if len(vals) > 1 else [])]
    if kind == "set":  # any TrainConfig override, e.g. set:optim.weight_decay=0.0005
        return [":".join(vals)]
    raise ValueError(f"unknown setting {setting!r}: use none, mid:BETA, bido:LX:LY, ls:ALPHA, train:EPOCHS[:LR], "
                     "model:NAME, tl_dmi:K[:EPOCHS], erase:HIGH[:P], trap:BETA[:ALPHA] or set:KEY=VALUE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--config", default="train-fmnist-target", help="the recipe the settings modify")
    ap.add_argument("--val-per-class", type=int, default=300)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    for setting in args.settings:
        cfg = load_config(TrainConfig, args.config, parse_overrides(
                          ["num_threads=1", f"epochs={args.epochs}", f"seed={args.seed}",
                           f"data.val_per_class={args.val_per_class}", *overrides_of(setting, args.epochs)]))
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            final = train_classifier(cfg, tmp)
        row = {"config": args.config, "setting": setting, "epochs": cfg.epochs, "seed": args.seed, "val_acc": final.get("val_acc"),
               "test_acc": final["test_acc"],
               "train_acc": final["train_acc"], "wall_s": round(time.perf_counter() - t0, 1),
               **{k: final[k] for k in ("pretrain_public_acc", "trapdoor_acc") if k in final}}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
