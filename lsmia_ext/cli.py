"""lsmia: label smoothing and model inversion, from training to the attack report.

Each subcommand lives beside the stage it runs and exposes `add_arguments(parser)` and
`run(args) -> int`; this file only wires them up."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserInputError

# UserInputError is what the package raises for a bad input; the built-in types are what the standard
# library and torch raise for the same kind of mistake before our checks see it.
USER_ERRORS = (UserInputError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)

COMMANDS = {
    "train": ("lsmia_ext.train.cli", "train a classifier (target or evaluation model)"),
    "train-prior": ("lsmia_ext.priors.cli", "train the generator prior on public data"),
    "attack": ("lsmia_ext.attacks.cli", "run a model inversion attack against a target"),
    "evaluate": ("lsmia_ext.metrics.cli", "score an attack run directory"),
    "experiment": ("lsmia_ext.experiment.cli", "the label smoothing study end to end"),
    "audit": ("lsmia_ext.audit.cli", "how much an attack recovers from your own model (and what NLS changes)"),
    "toy": ("lsmia_ext.toy", "the paper's 2D toy study"),
    "demo-loss": ("lsmia_ext.ops.demo", "show fused_ls_ce against torch for a few alphas"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="lsmia", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        if name == chosen:  # only the chosen stage is imported (keeps `lsmia CMD` quick to start)
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    try:
        if isinstance(getattr(args, "overrides", None), list):  # --set strings -> one mapping, parsed here only
            from .config import parse_overrides

            args.overrides = parse_overrides(args.overrides)
        return int(importlib.import_module(args._module).run(args) or 0)
    except USER_ERRORS as e:  # mistakes a user can fix: one line, no traceback
        print(f"lsmia {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__

if __name__ == "__main__":
    sys.exit(main())
