"""Desktop notifications: one per result, or one summary for a burst.

Each result's notification shows the picture and opens it when clicked; a burst's summary opens
the gallery page (see notifier.py for how they reach the desktop, and the fallback). Sending
happens on this sink's own thread, fed by a small bounded queue, because a notification call can
hang (a D-Bus activation that never comes) and the worker must never wait on it. No display or
no notification server is normal on servers: it is logged once at INFO and notifications are off
for the rest of the run.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from teddywatch.config import NotifyConfig
from teddywatch.results import ERROR, UNSURE, Result, format_confidence
from teddywatch.sinks.notifier import Message, default_notifier

log = logging.getLogger(__name__)

#: Names for the default model's labels; any other label is shown as written.
DISPLAY_NAMES = {"black": "Black bear", "grizzly": "Grizzly bear", "teddy": "Teddy bear"}
#: A continuous trickle still gets a summary this often (in bursts of burst_seconds).
MAX_BURST_SPANS = 6

Send = Callable[[Message], None]


def display_name(label: str) -> str:
    return DISPLAY_NAMES.get(label, label.replace("_", " ").capitalize())


def single_message(result: Result) -> Message:
    """'Teddy bear, 99.7%' with the file name as the body; the figure is format_confidence's, as
    in the tray and the gallery. It shows the picture and a click opens it; for an error, a click
    opens a regular file only (never a pipe or a link to a device)."""
    path = result.moved_to or result.path
    name = os.path.basename(path)
    if result.status == ERROR:
        return Message("Could not classify an image", f"{name}: {result.detail}",
                       opens=path if os.path.isfile(path) else None)
    shown = format_confidence(result.confidence)
    if result.status == UNSURE:
        return Message(f"{display_name(result.label)}? {shown} (unsure)", name, path, path)
    return Message(f"{display_name(result.label)}, {shown}", name, path, path)


def _summary_key(result: Result) -> str:
    if result.status == ERROR:
        return "error"
    return "unsure" if result.status == UNSURE else result.label


@dataclass
class BurstSummary:
    """Decides what to show: the first `summarise_after` results of a burst one by one, then a
    single summary of the whole burst once it has been quiet for `burst_seconds`.

    Pure logic with an explicit clock, so it is tested without threads or a desktop.
    """

    summarise_after: int
    burst_seconds: float
    gallery_page: Path | str | None = None  # a click on the summary opens it (a file or URL)
    _counts: Counter = field(default_factory=Counter)
    _started: float = 0.0
    _last: float = float("-inf")

    def add(self, result: Result, now: float) -> list[Message]:
        out = self.due(now)
        if not self._counts:
            self._started = now
        self._counts[_summary_key(result)] += 1
        self._last = now
        if sum(self._counts.values()) <= self.summarise_after:
            out.append(single_message(result))
        return out

    def due(self, now: float) -> list[Message]:
        """The summary, if a burst has ended (quiet) or has run long enough."""
        total = sum(self._counts.values())
        if not total:
            return []
        quiet = now - self._last >= self.burst_seconds
        too_long = now - self._started >= self.burst_seconds * MAX_BURST_SPANS
        if not (quiet or too_long):
            return []
        counts, self._counts = self._counts, Counter()
        if total <= self.summarise_after:
            return []  # each one was already shown
        parts = ", ".join(f"{n} {key}" for key, n in counts.most_common())
        page = None if self.gallery_page is None else str(self.gallery_page)
        body = "teddywatch classified a burst of images" + (
            "; click to open the gallery" if page else "")
        return [Message(f"{total} images: {parts}", body, opens=page)]

    def next_deadline(self) -> float | None:
        if not self._counts:
            return None
        return min(self._last + self.burst_seconds,
                   self._started + self.burst_seconds * MAX_BURST_SPANS)


class NotifySink:
    """The Sink: hands results to the sender thread and never blocks the worker."""

    name = "notify"
    required = False

    def __init__(self, config: NotifyConfig, send: Send | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 gallery_page: Path | str | None = None) -> None:
        self._summary = BurstSummary(config.summarise_after, config.burst_seconds, gallery_page)
        self._send = send or default_notifier().send
        self._clock = clock
        self._inbox: queue.Queue[Result | None] = queue.Queue(maxsize=256)
        self._dropped = 0
        self._disabled = False
        self._thread = threading.Thread(target=self._run, name="teddywatch-notify", daemon=True)
        self._thread.start()

    def handle(self, result: Result) -> Result:
        if not self._disabled:
            try:
                self._inbox.put_nowait(result)
            except queue.Full:  # the desktop is slower than the burst: the summary says enough
                self._dropped += 1
        return result

    def close(self, timeout: float = 2.0) -> None:
        """Send what is due (a burst's summary included), then stop the thread."""
        try:
            self._inbox.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            deadline = self._summary.next_deadline()
            wait = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                item = self._inbox.get(timeout=wait)
            except queue.Empty:
                self._deliver(self._summary.due(self._clock()))
                continue
            if item is None:  # closing: a burst in progress is summarised now
                self._deliver(self._summary.due(float("inf")))
                return
            self._deliver(self._summary.add(item, self._clock()))

    def _deliver(self, messages: list[Message]) -> None:
        for message in messages:
            if self._disabled:
                return
            try:
                self._send(message)
            except Exception as exc:  # no desktop, no D-Bus, no notification server
                self._disabled = True
                log.info("desktop notifications are unavailable (%s); carrying on without them",
                         _first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
