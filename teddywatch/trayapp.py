"""`teddywatch run` with a tray: the entry points that build a Tray around a Service (or around
a start-up failure) and run it. The Tray itself is in `tray.py`."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from teddywatch import platform_check
from teddywatch.config import Config, load_config
from teddywatch.gallery import Gallery, recent_results
from teddywatch.gallery.server import bind_server
from teddywatch.results import Result
from teddywatch.tray import RECENT, Tray


def run(config: Config, notices: Sequence[str] = ()) -> int:
    """`teddywatch run`: the service behind a tray icon, or headless when there is no display or
    no tray backend (said in one line)."""
    from teddywatch.headless import run_headless
    from teddywatch.service import Service

    problem = platform_check.display_problem()
    icon_class = None
    if problem is None:
        icon_class, problem = platform_check.load_icon_class()
    if problem is not None:
        print(f"teddywatch: {problem}", file=sys.stderr)
        return run_headless(config)
    recent = _recent_results(config)
    gallery = None
    if config.gallery.enabled:
        gallery = Gallery(items=config.gallery.items)
        gallery.extend(recent)
    # The live gallery (127.0.0.1, a token per start): Open gallery and a burst's notification
    # open its address; without it, the page in the data folder.
    server, not_served = bind_server(config.gallery, gallery)
    url = server.url if server is not None else None
    service = Service(config, gallery_link=url)
    try:
        if server is not None:
            server.start(service)
        Tray(service, config, icon_class=icon_class, gallery=gallery, gallery_url=url,
             recent=recent, notices=[*notices, not_served] if not_served else notices).run()
    finally:
        if server is not None:
            server.close()
    return 0


class _NotStarted:
    """What the tray holds when teddywatch failed before a service existed (a config that does
    not load): starting re-raises that error, so the tray shows it as any start-up error."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def start(self) -> None:
        raise self.error

    def stop(self) -> None:
        return None

    def pause(self) -> None:
        return None

    def resume(self) -> None:
        return None

    def status(self) -> Any:
        return None

    def subscribe(self, callback: Callable[[Any], None]) -> Any:
        return lambda: None

    # Nothing to teach: no model was loaded (the failure menu offers none of these).
    labels: tuple[str, ...] = ()
    can_learn = False
    model_name = ""

    def correct(self, path: str, label: str) -> Any:
        raise self.error

    def undo_correction(self, path: str) -> Any:
        raise self.error

    def undo_learning(self) -> str:
        raise self.error


def run_failed(error: BaseException, config_file: Path | None) -> None:
    """`teddywatch run` could not even load its config: where a desktop is, show that the way a
    start-up error is shown (the error icon, the message in the menu with the config file to
    open, one notification) until Quit, then return; without one, return at once. The caller
    prints the error and exits 2 either way."""
    if platform_check.display_problem() is not None:
        return
    icon_class, problem = platform_check.load_icon_class()
    if problem is not None:
        return
    config = replace(load_config(None), source=config_file)  # built-in defaults
    tray = Tray(_NotStarted(error), config, icon_class=icon_class)
    try:
        tray.run()
    except BaseException as exc:  # the error we gave it, re-raised when the tray closes
        if exc is not error:
            raise


def _recent_results(config: Config) -> list[Result]:
    """The tail of the results log, so the menu and the gallery are not empty after a restart."""
    return recent_results(config.log.path,
                          max(RECENT, config.gallery.items if config.gallery.enabled else 0))
