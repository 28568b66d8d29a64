"""`python -m lsmia_ext.train ...` = `lsmia train ...`; torchrun launches it with `-m lsmia_ext.train`."""
import argparse
import sys

from .cli import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="lsmia train", description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
