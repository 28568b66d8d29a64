"""`lsmia attack`: run PPA, GMI or MI-Face against a trained target (works under torchrun)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli_args import add_config_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, config_default="attack-ppa", set_example="optim.steps=20",
                    config_help="shipped config name (attack-ppa, attack-ppa-strong, attack-gmi, attack-miface, "
                                "attack-ppa-facescrub) "
                                "or a YAML path",
                    out_help="run directory to write (rerun to resume)")
    parser.add_argument("--target", required=True, help="target classifier: RUN_DIR or RUN_DIR/model.pt")
    parser.add_argument("--prior", default=None,
                        help="generator prior: RUN_DIR, generator.pt or YAML (needed by ppa and gmi)")
    parser.add_argument("--classes", type=int, nargs="+", default=None,
                        help="class ids in the target's label space (default: all)")


def target_data_config(target: str) -> dict | None:
    """The data section of the target's training config (the record of the `lsmia train` run directory
    holding model.pt), recorded in attack.json so that evaluation finds the private data."""
    from ..runio import recorded_config

    path = Path(target)
    data = (recorded_config(path if path.is_dir() else path.parent) or {}).get("data")
    return data if isinstance(data, dict) else None


def run(args: argparse.Namespace) -> int:
    from .. import dist
    from ..models import load_classifier
    from ..runio import check_out_dir
    from .config import load_attack_config
    from .runner import run_attack

    cfg = load_attack_config(args.config, args.overrides)
    check_out_dir(args.out)  # before the models load
    dist.init(dist.local_device(cfg.device))
    try:
        target = load_classifier(args.target)
        generator = discriminator = None
        if cfg.needs_prior:
            if args.prior is None:
                raise ValueError(f"attack {cfg.attack!r} needs --prior (a generator run directory or checkpoint)")
            from ..priors import load_discriminator, load_generator

            generator = load_generator(args.prior)
            if cfg.attack == "gmi":
                discriminator = load_discriminator(args.prior)
        summary = run_attack(cfg, target, generator, args.out, classes=args.classes, discriminator=discriminator,
                             data_config=target_data_config(args.target), target_path=args.target,
                             prior_path=args.prior if cfg.needs_prior else None)
        if dist.is_main():
            shown = {k: summary[k] for k in ("attack", "num_images", "mean_confidence", "run_dir")}
            shown["images_x_steps_per_s"] = summary["timings"].get("images_x_steps_per_s")
            print(json.dumps(shown, indent=2))
    finally:
        dist.shutdown()
    return 0
