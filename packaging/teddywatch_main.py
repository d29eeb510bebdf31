"""Entry point of the frozen app: the same `main()` as the `teddywatch` command."""

import sys

from teddywatch.cli import main

if __name__ == "__main__":
    sys.exit(main())
