"""`lsmia train-prior --config NAME_OR_PATH --out RUN_DIR [--set key=value ...]`: train (or resume) a prior."""
from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="shipped config name (e.g. prior-fmnist) or YAML path")
    parser.add_argument("--out", required=True, help="run directory; rerunning resumes or returns a finished run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted keys (train.steps=500); repeatable")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .config import PriorConfig
    from .train import train_prior

    cfg = load_config(PriorConfig, args.config, args.overrides)
    metrics = train_prior(cfg, args.out)
    summary = {k: v for k, v in metrics.items() if k != "history"}
    print(json.dumps(summary, indent=2))
    return 0
