"""Is there a display, a tray with a menu, and a notification server? Say what to install.

SafeEyes-style: each missing optional part is reported once, with what to install, and teddywatch
keeps working without it. Nothing here raises: every check returns a list of Problems.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from teddywatch import resources

log = logging.getLogger(__name__)

NOTIFICATIONS_BUS_NAME = "org.freedesktop.Notifications"
SNI_WATCHER_BUS_NAME = "org.kde.StatusNotifierWatcher"

LINUX_PACKAGES = ("Debian/Ubuntu: sudo apt install gir1.2-ayatanaappindicator3-0.1 "
                  "gir1.2-gtk-3.0 libnotify-bin libgirepository1.0-dev libcairo2-dev "
                  "libdbus-1-dev pkg-config, then "
                  f"{resources.pip_install_command('linux-desktop')}")


@dataclass(frozen=True)
class Problem:
    part: str      # "display", "tray", "menu", "notifications"
    message: str   # what is missing and what it means for the user
    fix: str       # what to install or do

    def __str__(self) -> str:
        return f"{self.message} {self.fix}"


def is_linux_like() -> bool:
    return sys.platform not in ("win32", "darwin")


def display_problem() -> Problem | None:
    """None when a GUI session is reachable; else why not. Only X11/Wayland need checking."""
    if not is_linux_like():
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return Problem("display", "no display (neither DISPLAY nor WAYLAND_DISPLAY is set);",
                   "running headless, without the tray icon.")


def load_icon_class() -> tuple[Any | None, Problem | None]:
    """pystray's Icon class for this desktop, or the reason it cannot load."""
    try:
        import pystray
    except Exception as exc:  # pystray raises Xlib errors, not only ImportError, on a bad DISPLAY
        log.debug("pystray failed to load", exc_info=True)
        return None, Problem("tray", f"no tray icon backend could start ({exc});",
                             "running headless. " + (LINUX_PACKAGES if is_linux_like() else ""))
    return pystray.Icon, None


def backend_name(icon_class: Any) -> str:
    """'appindicator', 'gtk', 'xorg', 'win32', 'darwin' or 'dummy'."""
    return icon_class.__module__.rsplit("._", 1)[-1]


def capability_problems(icon_class: Any) -> list[Problem]:
    """What this pystray backend cannot do (class flags only; no display calls)."""
    problems = []
    name = backend_name(icon_class)
    if not getattr(icon_class, "HAS_MENU", False):
        fix = (f"Set PYSTRAY_BACKEND=appindicator or gtk, which need PyGObject. {LINUX_PACKAGES}"
               if is_linux_like() else "Use the default pystray backend for this platform.")
        problems.append(Problem("menu", f"the tray backend '{name}' has no menu: pause, the "
                                "results log and quit are not reachable from the icon "
                                "(quit with Ctrl-C or 'kill PID').", fix))
    return problems


def session_bus_problems(backend: str) -> list[Problem]:
    """Linux: a notification server, and for appindicator somewhere to show the icon."""
    if not is_linux_like():
        return []
    try:
        import dbus
    except ImportError:
        return [Problem("notifications", "desktop notifications need dbus-python, which is not "
                        "installed; results only go to the log.", LINUX_PACKAGES)]
    try:
        bus = dbus.SessionBus()
        owned = set(bus.list_names())
        activatable = set(bus.list_activatable_names())
    except dbus.DBusException as exc:
        return [Problem("notifications", f"no D-Bus session bus ({exc.get_dbus_message()}); "
                        "no desktop notifications.", "Run teddywatch inside a desktop session.")]
    problems = []
    if NOTIFICATIONS_BUS_NAME not in owned | activatable:
        problems.append(Problem("notifications", "no notification server is running; results "
                                "only go to the log and the tray.",
                                "Install and start one, e.g. dunst or your desktop's own "
                                "(sudo apt install dunst)."))
    if backend in ("appindicator", "gtk") and not _has_tray_host(owned, backend):
        problems.append(Problem("tray", "no system tray is running, so the icon and its menu "
                                "may not be visible.", "On GNOME install and enable the "
                                "AppIndicator extension (gnome-shell-extension-appindicator); "
                                "elsewhere add the panel's tray applet or run stalonetray."))
    return problems


def _has_tray_host(bus_names: set[str], backend: str) -> bool:
    if backend == "appindicator" and SNI_WATCHER_BUS_NAME in bus_names:
        return True
    return _xembed_tray_present()  # appindicator falls back to XEmbed, like the gtk backend


def _xembed_tray_present() -> bool:
    """An XEmbed system tray owns the _NET_SYSTEM_TRAY_S<screen> selection."""
    if not os.environ.get("DISPLAY"):
        return False
    try:
        from Xlib import X, display
        conn = display.Display()
        try:
            atom = conn.intern_atom(f"_NET_SYSTEM_TRAY_S{conn.get_default_screen()}")
            return conn.get_selection_owner(atom) != X.NONE
        finally:
            conn.close()
    except Exception:  # no python-xlib, or the X server went away: treat as "unknown: no"
        log.debug("cannot query the XEmbed tray", exc_info=True)
        return False


def desktop_problems(icon_class: Any) -> list[Problem]:
    return capability_problems(icon_class) + session_bus_problems(backend_name(icon_class))


def report(problems: Iterable[Problem], notify: Callable[[str, str], None] | None = None) -> None:
    """Log each problem once as a warning; show them in one notification if one can be shown."""
    problems = list(problems)
    for problem in problems:
        log.warning("%s", problem)
    shown = [p for p in problems if p.part != "notifications"]
    if notify and shown:
        try:
            notify("teddywatch: something is missing", "\n".join(str(p) for p in shown))
        except Exception:
            log.debug("could not show the dependency notification", exc_info=True)
