"""`python -m teddywatch` is the same as the `teddywatch` command."""

import sys

from teddywatch.cli import main

if __name__ == "__main__":
    sys.exit(main())
