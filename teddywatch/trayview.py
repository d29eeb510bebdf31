"""What the tray shows, as text and icon state, read from a service StatusSnapshot.

Pure functions with no pystray import, so they are tested (and reused by the tray's menu)
without a display.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from teddywatch import icons
from teddywatch.results import ERROR, Result, format_confidence

# --- reading the service's status ------------------------------------------------------------

def icon_state(status: Any) -> str:
    """idle, working, paused or error, from a service StatusSnapshot.

    The service's `last_error` is sticky for the run, so it is not what "error" means here: the
    icon shows error while a watched folder is missing or when the latest file failed, and goes
    back to normal with the next good file. A results log that cannot be written (held results)
    is an error until they are written."""
    if getattr(status, "log_unwritable", ""):
        return icons.ERROR
    if status.state == "paused":
        return icons.PAUSED
    last = status.last_result
    if status.folders_missing or (last is not None and last.status == ERROR):
        return icons.ERROR
    return icons.WORKING if status.queue_length else icons.IDLE


def title_text(status: Any) -> str:
    """The tooltip and the menu's status line: 'teddywatch: 3 in queue, 128 today'."""
    state = icon_state(status)
    if state == icons.WORKING:
        head = f"{status.queue_length} in queue"
    elif state == icons.ERROR and getattr(status, "log_unwritable", ""):
        head = f"error: {status.log_unwritable}; {status.queue_length} files waiting"
    elif state == icons.ERROR:
        head = "error: " + (f"folder missing: {', '.join(status.folders_missing)}"
                            if status.folders_missing else
                            f"could not classify {os.path.basename(status.last_result.path)}")
    elif status.state in ("starting", "stopping", "stopped"):
        head = status.state
    else:
        head = state
    return f"teddywatch: {head}, {status.done_today} today"


def result_text(result: Result) -> str:
    """'teddy 99.7% - IMG_0042.jpg': a recent result, with format_confidence's figure so the
    menu says what the notification and the gallery say (an error shows no percentage)."""
    name = os.path.basename(result.moved_to or result.path)
    if result.status == ERROR:
        return f"error - {name}"
    unsure = "?" if result.status == "unsure" else ""
    return f"{result.label}{unsure} {format_confidence(result.confidence)} - {name}"


def last_text(recent: Sequence[Result]) -> str:
    """The menu's last-result line, newest first in `recent`."""
    return f"Last: {result_text(recent[0])}" if recent else "Last: nothing yet"
