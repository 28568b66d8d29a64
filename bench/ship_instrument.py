"""Ships a finished instrument stage of a study (RUN_DIR/prior, RUN_DIR/eval_model, RUN_DIR/eval_model2) inside
the package: lsmia_ext/instruments/NAME/ (its files) and NAME.json (stage hash, sha256 of every file, when and
where it was trained, its config). A study whose stage has that hash then fills it from there instead of
training (lsmia_ext/instruments). Commit both and check the installed tree after `pip install .`.

Run: python bench/ship_instrument.py RUN_DIR/STAGE [--name NAME] [--note TEXT ...] [--dest DIR]
"""
from __future__ import annotations

import argparse
import sys

from lsmia_ext.errors import UserInputError
from lsmia_ext.instruments.ship import ship_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage_dir", help="a finished stage directory of `lsmia experiment` (prior, eval_model, eval_model2)")
    parser.add_argument("--name", default=None, help="the instrument's name (default: its config name and hash prefix)")
    parser.add_argument("--note", action="append", default=[], help="a sentence for the manifest's notes (repeatable)")
    parser.add_argument("--dest", default=None, help="the instruments folder (default: the package's)")
    args = parser.parse_args(argv)
    try:
        inst = ship_stage(args.stage_dir, args.dest, args.name, tuple(args.note))
    except UserInputError as e:
        print(f"ship_instrument: error: {e}", file=sys.stderr)
        return 2
    m = inst.manifest
    print(f"shipped {m['stage']} (hash {m['stage_hash']}, trained {m['trained_at']}) as {inst.folder}: "
          f"{len(m['files'])} files, {m['bytes'] / 1024:.0f} KB; left out: {', '.join(m['omitted']) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
