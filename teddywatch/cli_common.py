"""What every command module shares: exit codes, the usage error, the active config."""

from __future__ import annotations

import argparse

from teddywatch.config import Config, find_config, load_config

EXIT_OK, EXIT_BUG, EXIT_USER = 0, 1, 2
EXIT_SOME_FAILED = 1  # classify: a file could not be classified (the others were)
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in the command line itself (a missing file, say)."""


def active_config(args: argparse.Namespace) -> Config:
    """The config named by --config, else the user's, else built-in defaults."""
    return load_config(find_config(args.config))
