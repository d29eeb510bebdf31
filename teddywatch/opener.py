"""Opening a file or folder with the platform's default application (xdg-open, open, startfile).

The opener runs in the background and a small daemon thread waits for it, so it never becomes a
zombie and a failure (no opener, no application for the file type: xdg-open exits non-zero) is
logged and handed to `on_error`, for the caller to tell the user in a notification.

`TEDDYWATCH_OPENER` replaces the platform opener with a command of your own (split like a shell
would; the path is added as its last argument): `TEDDYWATCH_OPENER="gio open"`, or a script in
tests that records what it was asked to open.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import threading
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)

OPENER_ENV = "TEDDYWATCH_OPENER"

OnError = Callable[[str, str], None]  # (path, reason in words)


def opener_command(target: str) -> list[str] | None:
    """The command that opens `target`; None on Windows (os.startfile has no command)."""
    custom = os.environ.get(OPENER_ENV, "").strip()
    if custom:
        return [*shlex.split(custom), target]
    if sys.platform == "win32":
        return None
    return ["open", target] if sys.platform == "darwin" else ["xdg-open", target]


def open_path(path: str | os.PathLike[str], on_error: OnError | None = None) -> None:
    """Start the opener for `path` and return at once; a failure is logged and passed to
    `on_error(path, reason)`, from a reaper thread when the opener exits non-zero."""
    target = os.fspath(path)
    command = opener_command(target)
    try:
        if command is None:
            os.startfile(target)  # type: ignore[attr-defined]  # Windows only
            return
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:  # no xdg-open, say, or Windows has no application for it
        _failed(target, exc.strerror or str(exc), on_error)
        return
    threading.Thread(target=_reap, args=(process, target, on_error),
                     name="teddywatch-opener", daemon=True).start()


def _reap(process: subprocess.Popen, target: str, on_error: OnError | None) -> None:
    """Wait for the opener (xdg-open may wait for the viewer) so it leaves no zombie."""
    last = deque(maxlen=1)  # a viewer may write to stderr for hours: keep only the last line
    for line in process.stderr:
        if line.strip():
            last.append(line.decode(errors="replace").strip())
    process.stderr.close()
    process.wait()
    if process.returncode != 0:
        detail = last[0] if last else ""
        reason = f"{process.args[0]} exited with status {process.returncode}"
        _failed(target, f"{reason}: {detail}" if detail else reason, on_error)


def _failed(target: str, reason: str, on_error: OnError | None) -> None:
    log.warning("cannot open %s: %s", target, reason)
    if on_error is None:
        return
    try:
        on_error(target, reason)
    except Exception:  # telling the user must never break the caller's thread
        log.exception("could not report that %s did not open", target)
