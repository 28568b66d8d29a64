"""`python -m lsmia_ext.train ...` = `lsmia train ...`; torchrun launches it with `-m lsmia_ext.train`."""
import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
