"""How a notification reaches the desktop: one Message, with the app icon, the picture and a
click that opens something.

On Linux it goes through desktop-notifier (pure-Python D-Bus through dbus-fast): the Notify call
carries the app icon, the picture as the `image-path` hint and a default action; the server's
`ActionInvoked` signal arrives on this module's own asyncio loop thread and runs the platform
opener on the picture (or the gallery page, for a burst summary). Where desktop-notifier is not
installed (said once, with what to install), on other platforms, or when its call fails, plyer
sends the title and body as before, with the icon but no picture and no click.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from teddywatch import opener

log = logging.getLogger(__name__)

APP_NAME = "teddywatch"
SEND_TIMEOUT = 10.0  # seconds; a D-Bus call that hangs longer counts as failed


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    image: str | None = None  # the classified picture, for servers that show images
    opens: str | None = None  # what a click on the notification opens


class NotificationsUnavailable(Exception):
    pass


class Notifier:
    """Sends Messages; thread-safe. One per process (`default_notifier()`): it holds the D-Bus
    connection that hears clicks, so it outlives any one sink."""

    def __init__(self, open_path: Callable[..., None] = opener.open_path) -> None:
        self._open_path = open_path
        self._lock = threading.Lock()
        self._dbus: _DBusNotifier | None = None
        self._dbus_tried = False
        self._icon: str | None = None

    def tell(self, title: str, body: str) -> None:
        self.send(Message(title, body))

    def send(self, message: Message) -> None:
        """Show `message`; raise NotificationsUnavailable when no way works."""
        dbus = self._dbus_notifier()
        if dbus is not None:
            on_click = None if message.opens is None else (lambda: self._clicked(message.opens))
            try:
                if dbus.send(message, on_click):
                    return
                log.debug("desktop-notifier could not send %r; trying plyer", message.title)
            except Exception as exc:  # a hung call, a closed connection
                log.debug("desktop-notifier failed (%s); trying plyer", exc)
        plyer_send(message.title, message.body, self._icon_path())

    def _clicked(self, target: str) -> None:
        """On the D-Bus loop thread: start the opener elsewhere, since telling the user about a
        failure sends a notification through this same loop."""
        threading.Thread(target=self._open_path, args=(target, self._open_failed),
                         name="teddywatch-open", daemon=True).start()

    def _open_failed(self, target: str, reason: str) -> None:
        try:
            self.tell("teddywatch: cannot open", f"{target}: {reason}")
        except Exception as exc:  # the opener's log line already said it
            log.debug("no notification that %s did not open: %s", target, exc)

    def _dbus_notifier(self) -> _DBusNotifier | None:
        with self._lock:
            if self._dbus_tried:
                return self._dbus
            self._dbus_tried = True
            if not sys.platform.startswith("linux"):
                return None
            try:
                self._dbus = _DBusNotifier(self._icon_path())
            except ImportError:
                log.info("desktop-notifier is not installed: notifications have no picture and "
                         "no click action (pip install desktop-notifier); using plyer")
            return self._dbus

    def _icon_path(self) -> str | None:
        """The tray's bear as a PNG in the data folder (the same file start-at-login uses)."""
        if self._icon is None:
            from teddywatch import icons, resources

            path = resources.data_dir() / "teddywatch.png"
            try:
                if not path.exists():
                    icons.write_png(path)
                self._icon = str(path)
            except OSError as exc:
                log.debug("no app icon for notifications: %s", exc)
                self._icon = ""
        return self._icon or None


class _DBusNotifier:
    """desktop-notifier on an asyncio loop of its own, which also receives the clicks."""

    def __init__(self, icon: str | None) -> None:
        from desktop_notifier import Attachment, DesktopNotifier, Icon

        # It logs a warning with a traceback for each failed call; Notifier says it once.
        logging.getLogger("desktop_notifier").setLevel(logging.ERROR)
        self._attachment = Attachment
        self._loop = asyncio.new_event_loop()
        # When the session bus goes away dbus-fast's reader ends with an EOFError nobody awaits:
        # the tray says "session ended" in one line; this is only worth a debug line.
        self._loop.set_exception_handler(
            lambda loop, context: log.debug("D-Bus loop: %s", context.get("exception")
                                            or context.get("message")))
        threading.Thread(target=self._loop.run_forever, name="teddywatch-dbus",
                         daemon=True).start()
        self._notifier = DesktopNotifier(app_name=APP_NAME,
                                         app_icon=Icon(path=Path(icon)) if icon else None)

    def send(self, message: Message, on_click: Callable[[], None] | None) -> bool:
        """True once the server has the notification (desktop-notifier logs, not raises)."""
        sent = threading.Event()
        options = {"on_dispatched": sent.set}
        if message.image:
            options["attachment"] = self._attachment(path=Path(os.path.abspath(message.image)))
        if on_click is not None:
            options["on_clicked"] = on_click
        call = self._notifier.send(message.title, message.body, **options)
        asyncio.run_coroutine_threadsafe(call, self._loop).result(timeout=SEND_TIMEOUT)
        return sent.is_set()


def plyer_send(title: str, body: str, icon: str | None = None) -> None:
    """Show one notification with plyer; raise NotificationsUnavailable when it cannot."""
    if sys.platform.startswith("linux") and not (
            os.environ.get("DBUS_SESSION_BUS_ADDRESS") or os.environ.get("DISPLAY")
            or os.environ.get("WAYLAND_DISPLAY")):
        # plyer would fall back to notify-send, which fails without telling plyer.
        raise NotificationsUnavailable("no desktop session (no D-Bus session bus or display)")
    try:
        from plyer import notification
    except ImportError as exc:
        raise NotificationsUnavailable(f"plyer is not installed: {exc}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plyer warns when dbus-python is missing
        notification.notify(title=title, message=body, app_name=APP_NAME, app_icon=icon or "",
                            timeout=5)


_default: Notifier | None = None
_default_lock = threading.Lock()


def default_notifier() -> Notifier:
    global _default
    with _default_lock:
        if _default is None:
            _default = Notifier()
        return _default
