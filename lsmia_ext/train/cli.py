"""`lsmia train --config NAME_OR_PATH --out RUN_DIR [--set key=value ...]` (also under torchrun)."""
from __future__ import annotations

import json

from ..cli_args import add_config_args


def add_arguments(parser) -> None:
    add_config_args(parser, config_required=True, set_example="loss.alpha=-0.05",
                    config_help="shipped config name (e.g. train-fmnist-target) or path to a YAML file",
                    out_help="run directory; rerunning the command resumes the run")


def run(args) -> int:
    from .. import dist
    from ..config import load_config
    from .config import TrainConfig
    from .loop import train_classifier

    cfg = load_config(TrainConfig, args.config, args.overrides)
    try:
        final = train_classifier(cfg, args.out)
        if dist.is_main():
            print(json.dumps({k: final[k] for k in ("test_acc", "test_nll", "ece", "wall_s")}, indent=2))
    finally:
        dist.shutdown()
    return 0
