"""`lsmia train --config NAME_OR_PATH --out RUN_DIR [--set key=value ...]` (also under torchrun)."""
from __future__ import annotations

import json


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True,
                        help="shipped config name (e.g. train-fmnist-target) or path to a YAML file")
    parser.add_argument("--out", required=True, help="run directory; rerunning the command resumes the run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted keys for nesting (e.g. loss.alpha=-0.05)")


def run(args) -> int:
    from .. import dist
    from ..config import load_config
    from .config import TrainConfig
    from .loop import train_classifier

    cfg = load_config(TrainConfig, args.config, args.set)
    try:
        final = train_classifier(cfg, args.out)
        if dist.is_main():
            print(json.dumps({k: final[k] for k in ("test_acc", "test_nll", "ece", "wall_s")}, indent=2))
    finally:
        dist.shutdown()
    return 0
