"""The arguments every stage command shares: --config, --out and repeatable --set KEY=VALUE overrides.

`--set` strings land in `args.overrides` as given; lsmia_ext.cli.main turns them into a mapping
{dotted key: value} (config.parse_overrides) before the command runs, so a command reads a mapping."""
from __future__ import annotations

import argparse


def add_config_args(parser: argparse.ArgumentParser, *, config_help: str, out_help: str, set_example: str,
                    config_default: str | None = None, config_required: bool = False, out_required: bool = True,
                    out_metavar: str = "RUN_DIR") -> None:
    parser.add_argument("--config", required=config_required, default=config_default, metavar="NAME_OR_PATH",
                        help=config_help)
    parser.add_argument("--out", required=out_required, default=None, metavar=out_metavar, help=out_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value, dotted keys for nesting (e.g. {set_example}); repeatable")


def add_executor_args(parser: argparse.ArgumentParser):
    """--workers N | --scheduler ADDRESS: where a command runs its stage graph (default: in this process).
    Returns their mutually exclusive group (a command adds its other ways of running to it)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run independent stages in parallel on a local Dask cluster of N worker processes "
                            "(pip install '.[dask]'); same results as the default sequential run")
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="run the stages on an existing Dask cluster (address or scheduler JSON file); every "
                            "worker must see --out at the same path (a shared file system)")
    return where


def executor_from_args(args: argparse.Namespace, threads: int | None):
    """The executor --workers / --scheduler ask for (None: the default sequential one); `threads`: each
    stage's thread count, a local cluster's worker resource."""
    if args.workers is None and args.scheduler is None:
        return None
    from .executor import DaskExecutor

    return DaskExecutor(args.workers, args.scheduler, threads=threads or 1)
