"""The tray icon and its menu: a thin layer that only calls the service and opens files.

`Icon.run()` owns the main thread (pystray requires it on macOS, and GTK wants one loop); the
service starts from pystray's `setup` callback, on pystray's setup thread. The service reports
each Result and status change through `subscribe`; those callbacks arrive on service threads, so
they only record and schedule a refresh, and pystray's gtk/appindicator backends marshal icon,
title and menu updates onto the GTK loop. Quit and SIGTERM take the same path: stop the icon's
loop, then stop the service on the main thread.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from teddywatch import autostart, icons, platform_check, resources
from teddywatch.config import Config
from teddywatch.gallery import Gallery, GallerySink
from teddywatch.opener import open_path
from teddywatch.results import Result
from teddywatch.runlock import AlreadyRunning
from teddywatch.sinks.notifier import default_notifier
from teddywatch.traymenu import TeachMenu
from teddywatch.trayview import icon_state, last_text, result_text, title_text  # noqa: F401

log = logging.getLogger(__name__)

RECENT = 8
REFRESH_SECONDS = 0.25  # coalesce a burst of results into a few menu rebuilds


class ServiceLike(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def status(self) -> Any: ...
    def subscribe(self, callback: Callable[[Any], None]) -> Any: ...
    # teaching (traymenu.py): the model's labels, corrections and its learned versions
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def can_learn(self) -> bool: ...
    @property
    def model_name(self) -> str: ...
    def correct(self, path: str, label: str) -> Any: ...
    def undo_correction(self, path: str) -> Any: ...
    def undo_learning(self) -> str: ...


# --- the tray --------------------------------------------------------------------------------

class Tray:
    """Wires a service to a pystray icon. Owns no logic beyond what to show and what to call."""

    def __init__(self, service: ServiceLike, config: Config, *, icon_class: Any = None,
                 opener: Callable[[str], None] | None = None,
                 notify: Callable[[str, str], None] | None = None,
                 gallery: Gallery | None = None, gallery_url: str | None = None,
                 problems: list[platform_check.Problem] = (),
                 recent: list[Result] = (), notices: Sequence[str] = ()) -> None:
        import pystray  # here, not at module level: importing it needs a display

        self._pystray = pystray
        self.service = service
        self.config = config
        # The platform opener; when it fails (xdg-open finds no application) the user is told.
        self.opener = opener or (lambda path: open_path(path, on_error=self._open_failed))
        self.notify = notify or default_notifier().tell
        self.gallery = gallery
        self.gallery_url = gallery_url  # the gallery server's address; None: open the page file
        # The gallery is fed from the subscribe hook; its sink writes on its own thread.
        self._gallery_sink = GallerySink(gallery) if gallery is not None else None
        self.recent: deque[Result] = deque(reversed(recent[-RECENT:]), maxlen=RECENT)
        self.startup_error: BaseException | None = None
        self.session_ended = ""  # why the desktop session went away, once it has
        self._problems = list(problems)
        self._notices = list(notices)  # said as a notification before the service starts
        self._state = icons.IDLE
        self._refresh_timer: threading.Timer | None = None
        self._lock = threading.Lock()
        # Each recent result's submenu and the learned model's items, with their own thread.
        self.teach = TeachMenu(service, config.model.path, pystray, opens=self._opens,
                               tell=self._tell, refresh=self._refresh)
        icon_class = icon_class or pystray.Icon
        self.icon = icon_class("teddywatch", icons.draw(icons.IDLE), "teddywatch: starting",
                               menu=self._menu())

    # --- running ----------------------------------------------------------------------------

    def run(self) -> None:
        """Block in the icon's loop until Quit or SIGTERM/SIGINT, then stop the service.

        Re-raises an error the service raised while starting, for the CLI to report."""
        self._install_signal_handlers()
        self._watch_session_bus()
        try:
            self.icon.run(setup=self._setup)
        except Exception as exc:
            if not self.session_ended:
                raise
            # pystray's clean-up calls D-Bus too (g-io-error-quark: connection closed).
            log.debug("after the session bus closed: %s", exc)
        finally:
            self._cancel_refresh()
            self.teach.close()  # a correction or a learn under way ends first
            log.info("stopping the service")
            self.service.stop()
            if self._gallery_sink is not None:
                self._gallery_sink.close()
        if self.startup_error is not None:
            raise self.startup_error

    def quit(self, *_: Any) -> None:
        """The Quit item and the signal handlers: leave the icon's loop; run() stops the rest."""
        log.info("quitting")
        self.icon.stop()

    def _setup(self, icon: Any) -> None:
        icon.visible = True
        self.service.subscribe(self._on_event)
        for notice in self._notices:
            self._tell("teddywatch", notice)
        try:
            self.service.start()
        except BaseException as exc:  # e.g. a model that cannot load: the CLI reports it too
            self.startup_error = exc
            if isinstance(exc, AlreadyRunning):  # started from a menu: say it on the desktop
                self._tell("teddywatch", str(exc))
                self.icon.stop()
            else:
                self._show_failure(exc)  # stays, red, until Quit: autostart has no terminal
            return
        log.info("teddywatch is running in the tray (pystray backend: %s)",
                 platform_check.backend_name(type(self.icon)))
        self.teach.load()  # corrections made before: shown from the first menu on
        self._report_problems()
        if self._gallery_sink is not None and len(self.gallery):
            self._gallery_sink.refresh()  # results from earlier runs, on the sink's thread
        self._refresh()

    def _show_failure(self, exc: BaseException) -> None:
        """The service could not start: the error icon, the message in the menu, one
        notification; the log file has the details (the traceback at DEBUG)."""
        message = str(exc).strip() or type(exc).__name__
        if not _is_user_error(exc):
            message = f"{type(exc).__name__}: {message}"
        first = message.splitlines()[0]
        log.error("teddywatch could not start: %s", message)
        log.debug("start-up error details", exc_info=exc)
        Menu, Item = self._pystray.Menu, self._pystray.MenuItem
        log_file = resources.log_dir() / "teddywatch.log"
        items = [Item(f"Could not start: {_shorten(first)}", None, enabled=False),
                 Menu.SEPARATOR,
                 Item("Open log file", self._opens(log_file))]
        if self.config.source is not None:
            items.append(Item("Open config file", self._opens(self.config.source)))
        items += [Menu.SEPARATOR, Item("Quit", self.quit)]
        self._state = icons.ERROR
        self.icon.icon = icons.draw(icons.ERROR)
        self.icon.title = f"teddywatch: error: {_shorten(first)}"
        self.icon.menu = Menu(*items)
        self._tell("teddywatch could not start",
                   f"{' '.join(message.split())} (details: {log_file})")

    def _watch_session_bus(self) -> None:
        """GTK backends: when the session bus goes (the desktop session ended), GDBus would
        raise SIGTERM and pystray's clean-up fail on the closed connection; instead stop
        quietly, with one log line."""
        if platform_check.backend_name(type(self.icon)) not in ("gtk", "appindicator"):
            return
        try:
            from gi.repository import Gio

            bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
        except Exception:  # no session bus at all: platform_check reports that
            return
        bus.connect("closed", self._on_bus_closed)

    def _on_bus_closed(self, bus: Any, remote_peer_vanished: bool, error: Any) -> None:
        bus.set_exit_on_close(False)  # we quit ourselves, cleanly
        self.session_ended = "the desktop session ended (its D-Bus session bus closed)"
        log.warning("%s; stopping", self.session_ended)
        log.debug("session bus closed: %s", getattr(error, "message", error))
        self.quit()

    def _report_problems(self) -> None:
        problems = self._problems + platform_check.desktop_problems(type(self.icon))
        platform_check.report(problems, self.notify)

    def _install_signal_handlers(self) -> None:
        """SIGTERM and Ctrl-C quit like the menu does. GTK's loop runs in C, where Python
        signal handlers never get a turn, so the GTK backends use GLib's own signal sources."""
        backend = platform_check.backend_name(type(self.icon))
        if backend in ("gtk", "appindicator"):
            from gi.repository import GLib

            for signum in (signal.SIGTERM, signal.SIGINT):
                GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, self._glib_quit)
        elif threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.quit)
            signal.signal(signal.SIGINT, self.quit)

    def _glib_quit(self) -> bool:
        self.quit()
        return False  # remove the source: one quit is enough

    # --- service events ---------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        """Called on a service thread: remember, then schedule one refresh for the burst."""
        if isinstance(event, Result):
            self.recent.appendleft(event)
            if self._gallery_sink is not None:
                self._gallery_sink.handle(event)
        with self._lock:
            if self._refresh_timer is not None:
                return
            self._refresh_timer = threading.Timer(REFRESH_SECONDS, self._timed_refresh)
            self._refresh_timer.daemon = True
            self._refresh_timer.start()

    def _timed_refresh(self) -> None:
        with self._lock:
            self._refresh_timer = None
        self._refresh()

    def _cancel_refresh(self) -> None:
        with self._lock:
            if self._refresh_timer is not None:
                self._refresh_timer.cancel()
                self._refresh_timer = None

    def _refresh(self) -> None:
        """Push the current status to the icon, title and menu (the backends are thread-safe)."""
        if self.startup_error is not None:
            return  # the failure's icon and menu stay
        status = self.service.status()
        state = icon_state(status)
        if state != self._state:
            self._state = state
            self.icon.icon = icons.draw(state)
        self.icon.title = title_text(status)
        self.icon.update_menu()

    # --- the menu ---------------------------------------------------------------------------

    def _menu(self) -> Any:
        Menu, Item = self._pystray.Menu, self._pystray.MenuItem
        start_at_login = (Item("Start at login", self._toggle_autostart,
                               checked=lambda _: self._autostart_on())
                          if self._autostart_supported() else
                          Item("Start at login: not supported here", None, enabled=False))
        return Menu(
            Item(lambda _: title_text(self.service.status()), None, enabled=False),
            Item(lambda _: last_text(self.recent, self.teach.corrected), self._open_last,
                 enabled=lambda _: bool(self.recent)),
            Item("Recent results", Menu(self._recent_items)),
            Menu.SEPARATOR,
            *self.teach.model_items(),
            Menu.SEPARATOR,
            Item("Pause", self._toggle_pause, checked=lambda _: self._paused()),
            Menu.SEPARATOR,
            Item("Open results log", self._open_log),
            self._watched_item(),
            Item("Open gallery", self._open_gallery, visible=self.gallery is not None),
            Menu.SEPARATOR,
            start_at_login,
            Item("Quit", self.quit),
        )

    def _recent_items(self) -> list[Any]:
        Item = self._pystray.MenuItem
        if not self.recent:
            return [Item("Nothing yet", None, enabled=False)]
        return [self.teach.result_item(r) for r in self.recent]

    def _watched_item(self) -> Any:
        Menu, Item = self._pystray.Menu, self._pystray.MenuItem
        folders = [w.path for w in self.config.watch]
        if len(folders) == 1:
            return Item("Open watched folder", self._opens(folders[0]))
        return Item("Open watched folders",
                    Menu(*(Item(str(folder), self._opens(folder)) for folder in folders)))

    def _paused(self) -> bool:
        return icon_state(self.service.status()) == icons.PAUSED

    # --- actions (called by pystray on its loop thread, or by tests) -------------------------

    def _opens(self, path: str | os.PathLike[str]) -> Callable[..., None]:
        return lambda *_: self._open(path)

    def _open(self, path: str | os.PathLike[str]) -> None:
        if not os.path.exists(path):
            self._tell("teddywatch", f"{path} does not exist (any more).")
            return
        self.opener(os.fspath(path))

    def _open_failed(self, path: str, reason: str) -> None:
        """The opener's reaper thread: it has logged the failure; the desktop says it too."""
        self._tell("teddywatch: cannot open", f"{path}: {reason}")

    def _tell(self, title: str, body: str) -> None:
        """A notification from a menu action; without a notification server, the log says it."""
        if self.session_ended:
            return
        try:
            self.notify(title, body)
        except Exception as exc:
            log.warning("%s: %s (no notification: %s)", title, body, exc)

    def _open_last(self, *_: Any) -> None:
        if self.recent:
            self._open(self.recent[0].moved_to or self.recent[0].path)

    def _open_log(self, *_: Any) -> None:
        path = self.config.log.path
        self._open(path if path.exists() else path.parent)

    def _open_gallery(self, *_: Any) -> None:
        if self.gallery is None:
            return
        if self.gallery_url:
            self.opener(self.gallery_url)
            return
        if not self.gallery.page.exists():
            self.gallery.write()  # an empty page beats "file not found"
        self._open(self.gallery.page)

    def _toggle_pause(self, *_: Any) -> None:
        if self._paused():
            self.service.resume()
        else:
            self.service.pause()
        self._refresh()

    def _autostart_supported(self) -> bool:
        try:
            autostart.status()
        except autostart.AutostartError:
            return False
        return True

    def _autostart_on(self) -> bool:
        return autostart.status().enabled

    def _toggle_autostart(self, *_: Any) -> None:
        try:
            if self._autostart_on():
                autostart.disable()
            else:
                autostart.enable(self._autostart_args())
        except autostart.AutostartError as exc:
            log.warning("%s", exc)
            self._tell("teddywatch: start at login", str(exc))

    def _autostart_args(self) -> list[str]:
        """Start with the same config file, when it is not the default one."""
        source = self.config.source
        if source is None or source == resources.default_config_path():
            return []
        return ["--config", str(Path(source).absolute())]


def _is_user_error(exc: BaseException) -> bool:
    """A mistake the message explains (config, model, results log, sorting): no type name."""
    from teddywatch.config import ConfigError
    from teddywatch.engines import ModelError
    from teddywatch.ledger import LedgerError
    from teddywatch.sinks.sort import SortError

    return isinstance(exc, (ConfigError, ModelError, LedgerError, SortError))


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
