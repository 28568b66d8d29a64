"""`lsmia train-prior --config NAME_OR_PATH --out RUN_DIR [--set key=value ...]`: train (or resume) a prior."""
from __future__ import annotations

import argparse
import json

from ..cli_args import add_config_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, config_required=True, set_example="train.steps=500",
                    config_help="shipped config name (e.g. prior-fmnist) or YAML path",
                    out_help="run directory; rerunning resumes or returns a finished run")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .config import PriorConfig
    from .train import train_prior

    cfg = load_config(PriorConfig, args.config, args.overrides)
    metrics = train_prior(cfg, args.out)
    summary = {k: v for k, v in metrics.items() if k != "history"}
    print(json.dumps(summary, indent=2))
    return 0
