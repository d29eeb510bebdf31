"""Start at login, in each platform's conventional place.

Linux and other XDG desktops: a `.desktop` file in `$XDG_CONFIG_HOME/autostart` (the XDG Autostart
spec). macOS: a LaunchAgent plist in `~/Library/LaunchAgents`. Windows: a value under the
current user's `...\\CurrentVersion\\Run` registry key (no console window, no COM needed).
The command started is the frozen app itself when frozen, else `python -m teddywatch run`, so it
starts whatever installation turned it on.
"""

from __future__ import annotations

import logging
import os
import plistlib
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from teddywatch import icons, resources

log = logging.getLogger(__name__)

APP_ID = "teddywatch"
MAC_LABEL = "io.github.teddywatch"
WINDOWS_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


class AutostartError(Exception):
    """Start at login cannot be changed here; str() says why, ready to show."""


@dataclass(frozen=True)
class AutostartState:
    enabled: bool
    where: str  # the file or registry value that decides it

    def describe(self) -> str:
        return f"start at login is {'on' if self.enabled else 'off'} ({self.where})"


def launch_command(extra: Sequence[str] = ()) -> list[str]:
    """The argv that starts the tray app: the frozen executable, or this Python with -m."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "run", *extra]
    return [sys.executable, "-m", "teddywatch", "run", *extra]


def _platform() -> str:
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "xdg"


# --- public API: dispatch on platform -----------------------------------------------------

def status() -> AutostartState:
    kind = _platform()
    if kind == "windows":
        return _windows_status()
    path = _plist_path() if kind == "macos" else desktop_file_path()
    return AutostartState(path.exists(), str(path))


def enable(extra: Sequence[str] = ()) -> AutostartState:
    """Turn start at login on (rewriting the entry so it points at this installation)."""
    kind = _platform()
    command = launch_command(extra)
    if kind == "windows":
        _windows_set(command)
    elif kind == "macos":
        _atomic_write(_plist_path(), plistlib.dumps(_plist(command)))
    else:
        _atomic_write(desktop_file_path(), desktop_entry(command).encode("utf-8"))
    state = status()
    log.debug("%s", state.describe())
    return state


def disable() -> AutostartState:
    """Turn start at login off; nothing to do when it is already off."""
    kind = _platform()
    if kind == "windows":
        _windows_delete()
    else:
        path = _plist_path() if kind == "macos" else desktop_file_path()
        path.unlink(missing_ok=True)
    state = status()
    log.debug("%s", state.describe())
    return state


# --- XDG -------------------------------------------------------------------------------------

def desktop_file_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autostart" / f"{APP_ID}.desktop"


def desktop_entry(command: Sequence[str]) -> str:
    icon = icons.write_png(resources.data_dir() / "teddywatch.png")
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Name=teddywatch",
        "Comment=Classify new images in watched folders",
        f"Exec={exec_line(command)}",
        f"Icon={_escape_value(str(icon))}",
        "Terminal=false",
        "Categories=Graphics;Utility;",
        "X-GNOME-Autostart-enabled=true",
        "",
    ])


_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def exec_line(command: Sequence[str]) -> str:
    """Quote argv for an Exec key: the spec's quoting rule, then its string-value escaping."""
    parts = []
    for arg in command:
        arg = arg.replace("%", "%%")  # % starts a field code
        if any(c in _RESERVED for c in arg) or arg == "":
            inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
            arg = f'"{inner}"'
        parts.append(arg)
    return _escape_value(" ".join(parts))


def _escape_value(value: str) -> str:
    """A desktop-entry string value: backslash and control characters escaped."""
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
            .replace("\r", "\\r"))


# --- macOS -----------------------------------------------------------------------------------

def _plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{MAC_LABEL}.plist"


def _plist(command: Sequence[str]) -> dict:
    return {"Label": MAC_LABEL, "ProgramArguments": list(command), "RunAtLoad": True,
            "ProcessType": "Interactive"}


# --- Windows ---------------------------------------------------------------------------------

def _winreg():
    try:
        import winreg
    except ImportError:
        raise AutostartError("start at login needs the Windows registry, which this Python "
                             "lacks") from None
    return winreg


def _windows_command(command: Sequence[str]) -> str:
    import subprocess

    return subprocess.list2cmdline(list(command))


def _windows_set(command: Sequence[str]) -> None:
    winreg = _winreg()
    with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
        winreg.SetValueEx(key, APP_ID, 0, winreg.REG_SZ, _windows_command(command))


def _windows_delete() -> None:
    winreg = _winreg()
    with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
        try:
            winreg.DeleteValue(key, APP_ID)
        except FileNotFoundError:
            pass


def _windows_status() -> AutostartState:
    winreg = _winreg()
    where = f"HKCU\\{WINDOWS_RUN_KEY}\\{APP_ID}"
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY) as key:
            winreg.QueryValueEx(key, APP_ID)
    except FileNotFoundError:
        return AutostartState(False, where)
    return AutostartState(True, where)


# --- helpers ---------------------------------------------------------------------------------

def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and os.replace: a session starting meanwhile never reads half."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise AutostartError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise AutostartError(f"cannot write {path}: {exc.strerror}") from None
