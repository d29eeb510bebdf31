"""`teddywatch run` without a tray: the service, the gallery that follows it and the gallery's
server, until SIGINT or SIGTERM. Wiring only, as the tray's is (trayapp.py)."""

from __future__ import annotations

import logging
import signal
import threading

from teddywatch.config import Config
from teddywatch.results import Result
from teddywatch.service import Service

log = logging.getLogger(__name__)


def _follow_with_gallery(service: Service, gallery):  # noqa: ANN001, ANN202 - Gallery | None
    """Headless, as in the tray: the gallery page follows the service's results."""
    if gallery is None:
        return None
    from teddywatch.gallery import GallerySink

    sink = GallerySink(gallery)
    service.subscribe(lambda event: sink.handle(event) if isinstance(event, Result) else None)
    return sink


def _gallery(config: Config):  # noqa: ANN202 - a Gallery, or None when it is off
    if not config.gallery.enabled:
        return None
    from teddywatch.gallery import Gallery, recent_results

    gallery = Gallery(items=config.gallery.items)
    gallery.extend(recent_results(config.log.path, config.gallery.items))
    return gallery


def run_headless(config: Config) -> int:
    """Run the service until SIGINT or SIGTERM; then stop cleanly and return 0."""
    from teddywatch.gallery.server import bind_server

    stop = threading.Event()
    previous = {}

    def on_signal(signum: int, frame: object) -> None:
        log.info("stopping (%s)", signal.Signals(signum).name)
        stop.set()
        for sig, handler in previous.items():  # a second Ctrl-C interrupts the clean stop
            signal.signal(sig, handler)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    gallery = _gallery(config)
    server, _ = bind_server(config.gallery, gallery)  # None when off or it cannot listen (logged)
    service = Service(config, gallery_link=server.url if server is not None else None)
    sink = _follow_with_gallery(service, gallery)
    try:
        if server is not None:
            server.start(service)
        service.start()
        if sink is not None:
            sink.refresh()  # the page exists from the start, with earlier results
        if server is not None:
            log.info("the gallery, where results can be corrected: %s", server.url)
        while not stop.wait(0.5):
            pass
    finally:
        if server is not None:
            server.close()
        service.stop()
        if sink is not None:
            sink.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
    return 0
