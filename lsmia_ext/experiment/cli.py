"""`lsmia experiment [--config NAME_OR_PATH] [--preset quick] [--seeds N] --out RUN_DIR [--ablation DIR]
[--train-instruments]
[--workers N | --scheduler ADDRESS | --merge SHARD/results.json ...] [--set key=value ...]`.

In seed shards: run `--set 'seeds=[0,1]' --out runs/a` here and `--set 'seeds=[2,3]' --out runs/b`
elsewhere, then `--merge runs/a/results.json runs/b/results.json --out runs/all` with the same --config,
--preset and --set (less the seeds) assembles the whole study without running a stage (merge.py)."""
from __future__ import annotations

import argparse

from ..cli_args import add_config_args, add_executor_args, executor_from_args

from .config import DEFAULT_CONFIG, PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, set_example="target.set.epochs=4 or evaluate.kes.steps=500",
                    config_help=f"shipped experiment config name or YAML path (default {DEFAULT_CONFIG})",
                    out_help="run directory (stages already there are reused)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="reduced budget applied on top of the config (quick: about 2 minutes, for tests)")
    parser.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 (overrides the config's seeds)")
    parser.add_argument("--train-instruments", action="store_true",
                        help="train the prior and evaluation models even when the package ships them for this "
                             "config (lsmia_ext/instruments: filled from there by default, sha256-checked)")
    parser.add_argument("--ablation", default=None, metavar="OTHER_RUN_DIR",
                        help="a finished study whose paired claims the report shows as the ablation "
                             "'prior without the private domain' (same as the config field ablation)")
    parser.add_argument("--check-grid", action="store_true",
                        help="run nothing: read the trained targets in --out and say, per family and seed, "
                             "whether the primary cost's level is bracketed (validation accuracy only; "
                             "grid_check.py); exit status 1 when some family is not read")
    add_executor_args(parser).add_argument(
        "--merge", nargs="+", default=None, metavar="SHARD/results.json",
        help="run nothing: assemble the study from the results.json of its seed shards (runs of this "
             "--config/--preset/--set, each with its own --set seeds=[...] among this config's seeds, on any "
             "machine) into --out; refuses a shard of another study or a seed in two shards")


def run(args: argparse.Namespace) -> int:
    from .config import load_experiment_config
    from .pipeline import run_experiment

    cfg = load_experiment_config(args.config, args.preset, args.seeds, args.overrides, args.ablation)
    if args.check_grid:
        from .grid_check import grid_check, grid_check_text, trained_targets

        if cfg.report.primary_cost is None:
            raise ValueError(f"--check-grid: config {args.config} has no report.primary_cost to check a grid against")
        checks = grid_check(trained_targets(args.out, cfg.targets, cfg.seeds), cfg.targets, cfg.report.primary_cost,
                            cfg.report.max_gap)
        print(grid_check_text(checks) or f"no trained undefended target in {args.out} yet")
        return 0 if checks and all(c["read"] for c in checks) else 1
    if args.merge is not None:
        from .merge import merge_shards

        results = merge_shards(cfg, args.merge, args.out)
        print(f"wrote {args.out}/results.json, report.md, report.html from {len(args.merge)} shards "
              f"(seeds {results['settings']['experiment']['seeds']})")
        return 0
    results = run_experiment(cfg, args.out, executor=executor_from_args(args, cfg.num_threads),
                             train_instruments=args.train_instruments)
    print(f"wrote {args.out}/results.json, report.md, report.html in {results['timings']['total_wall_s']:.0f} s")
    return 0
