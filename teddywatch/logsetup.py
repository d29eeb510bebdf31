"""Logging to stderr (for people) and to a rotating file in the user log dir (for bug reports)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from teddywatch import resources

LOG_FILE_NAME = "teddywatch.log"


def setup_logging(verbose: bool = False, log_dir: Path | None = None) -> Path | None:
    """Configure the root logger once; returns the log file path (None if it cannot be written)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG)

    stderr = logging.StreamHandler()  # sys.stderr already shows odd bytes as \xff
    stderr.setLevel(logging.DEBUG if verbose else logging.INFO)
    stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose
                                          else "%(message)s"))
    root.addHandler(stderr)

    folder = log_dir or resources.log_dir()
    log_file = folder / LOG_FILE_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=1_000_000, backupCount=3, encoding="utf-8",
            errors="backslashreplace")  # a file name that is not UTF-8 shows as \xff
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot write the log file %s: %s", log_file, exc)
        return None
    rotating.setLevel(logging.DEBUG)
    rotating.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root.addHandler(rotating)
    # Third-party libraries are chatty at DEBUG; keep them at INFO even with -v.
    for noisy in ("PIL", "watchdog", "matplotlib", "urllib3", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    return log_file
