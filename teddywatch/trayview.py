"""What the tray shows, as text and icon state, read from a service StatusSnapshot.

Pure functions with no pystray import, so they are tested (and reused by the tray's menu)
without a display.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

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


def result_text(result: Result, corrected: str = "") -> str:
    """'teddy 99.7% - IMG_0042.jpg': a recent result, with format_confidence's figure so the
    menu says what the notification and the gallery say (an error shows no percentage).
    `corrected` is the label the user gave it: 'teddy 99.7% - IMG_0042.jpg ✓ other'."""
    name = os.path.basename(result.moved_to or result.path)
    mark = f" ✓ {corrected}" if corrected else ""
    if result.status == ERROR:
        return f"error - {name}{mark}"
    unsure = "?" if result.status == "unsure" else ""
    return f"{result.label}{unsure} {format_confidence(result.confidence)} - {name}{mark}"


def last_text(recent: Sequence[Result], corrected: Mapping[str, str] | None = None) -> str:
    """The menu's last-result line, newest first in `recent`; `corrected` maps a result's
    path to the label the user gave it."""
    if not recent:
        return "Last: nothing yet"
    return f"Last: {result_text(recent[0], (corrected or {}).get(recent[0].path, ''))}"


# --- teaching ---------------------------------------------------------------------------------

def correction_labels(result: Result, labels: Sequence[str]) -> list[str]:
    """What a recent result can be corrected to: every label of the model but the one it was
    given for sure (an unsure answer may be confirmed); nothing for a file that was not read."""
    if result.status == ERROR:
        return []
    return [label for label in labels if label != result.label or result.status == "unsure"]


_LEARNED = re.compile(r"^(?P<file>[^@+]+)(?:@[0-9a-f]+)?(?:\+v(?P<version>\d+))?$")


def learned_version(model_name: str) -> int:
    """The learned version in a model name ('bears-int8.onnx@8a52900c+v2' -> 2; shipped: 0)."""
    match = _LEARNED.match(model_name)
    return int(match["version"]) if match and match["version"] else 0


def model_text(model_name: str, learns: bool = True) -> str:
    """The menu's model line: 'Model: bears-int8 v2' (learned version 2), 'Model: bears-int8
    (original)' when it learns but no learned version is in use, 'Model: bears' when it cannot
    learn."""
    match = _LEARNED.match(model_name)
    if match is None:
        return f"Model: {model_name}"
    name = os.path.splitext(match["file"])[0]
    if match["version"]:
        return f"Model: {name} v{match['version']}"
    return f"Model: {name} (original)" if learns else f"Model: {name}"
