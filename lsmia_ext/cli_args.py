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
