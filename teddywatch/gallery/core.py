"""The most recent results, their thumbnails, and the static page of them in the data dir.

One self-contained file in the user data dir (no external assets; the thumbnails sit beside it in
`thumbs/`), rewritten atomically so a browser never shows half a page (page.py renders it).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from teddywatch import resources
from teddywatch.gallery.page import VERSION_NAME, render, thumb_key
from teddywatch.results import ERROR, Result

log = logging.getLogger(__name__)

PAGE_NAME = "gallery.html"
THUMBS_DIR = "thumbs"
THUMB_SIZE = 160


def default_page() -> Path:
    return resources.data_dir() / PAGE_NAME


@dataclass(frozen=True)
class Shown:
    """What the page shows since it was last written; the gallery server renders the same."""

    results: tuple[Result, ...] = ()        # newest first
    thumbs: Mapping[str, str | None] = field(default_factory=dict)  # thumb_key -> src or None
    version: str = ""

    def find(self, key: str) -> Result | None:
        """The result whose card is `key` (its thumb_key)."""
        return next((r for r in self.results if thumb_key(r) == key), None)


class Gallery:
    """Keeps the last `items` Results; `write()` renders them. Thread-safe: a sink calls `add`,
    the gallery server reads `shown()`."""

    def __init__(self, page: Path | None = None, *, items: int = 200,
                 thumb_size: int = THUMB_SIZE) -> None:
        self.page = page or default_page()
        self.thumbs = self.page.parent / THUMBS_DIR
        self.version_file = self.page.parent / VERSION_NAME
        self.thumb_size = thumb_size
        self._results: deque[Result] = deque(maxlen=items)
        self._failed: set[str] = set()  # thumbnails that could not be made: do not retry
        self._shown = Shown()
        self._lock = threading.Lock()

    def add(self, result: Result) -> None:
        with self._lock:
            self._results.append(result)

    def extend(self, results: Iterable[Result]) -> None:
        """Add many, e.g. the tail of the results log at start, without writing."""
        with self._lock:
            self._results.extend(results)

    def add_batch(self, results: Iterable[Result]) -> Path:
        """The sink step: remember a batch, then rewrite the page once."""
        self.extend(results)
        return self.write()

    def __len__(self) -> int:
        return len(self._results)

    def write(self) -> Path:
        """Make missing thumbnails, rewrite the page atomically, drop thumbnails no longer shown."""
        with self._lock:
            shown = list(reversed(self._results))  # newest first
        self.thumbs.mkdir(parents=True, exist_ok=True)
        thumbs = {thumb_key(r): self._thumbnail(r) for r in shown}
        version = f"{time.time_ns()}-{len(shown)}"
        _atomic_write_text(self.page, render(shown, thumbs, version))
        # An open page loads this file every few seconds and reloads itself when it changed.
        _atomic_write_text(self.version_file, f"window.teddywatchVersion({json.dumps(version)});\n")
        with self._lock:
            self._shown = Shown(tuple(shown), thumbs, version)
        self._prune(set(thumbs))
        log.debug("gallery: wrote %d results to %s", len(shown), self.page)
        return self.page

    def shown(self) -> Shown:
        """The results, thumbnails and version of the last write."""
        with self._lock:
            return self._shown

    # --- thumbnails -------------------------------------------------------------------------

    def _thumbnail(self, result: Result) -> str | None:
        """The thumbnail's path relative to the page, made now if it is not cached; else None."""
        key = thumb_key(result)
        target = self.thumbs / f"{key}.jpg"
        relative = f"{THUMBS_DIR}/{key}.jpg"
        if target.exists():
            return relative
        if result.status == ERROR or key in self._failed:
            return None
        source = result.moved_to if result.moved_to and os.path.exists(result.moved_to) \
            else result.path
        try:
            _make_thumbnail(Path(source), target, self.thumb_size)
        except Exception as exc:  # a file deleted or replaced since: show it without a picture
            log.debug("gallery: no thumbnail for %s: %s", source, exc)
            self._failed.add(key)
            return None
        return relative

    def _prune(self, keep: set[str]) -> None:
        for path in self.thumbs.glob("*.jpg"):
            if path.stem not in keep:
                path.unlink(missing_ok=True)


def _make_thumbnail(source: Path, target: Path, size: int) -> None:
    from teddywatch.imaging import decode  # safe decoding: EXIF rotation, bomb guard, draft mode

    with decode(source, size) as image:
        image.thumbnail((size, size))
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".thumb-", suffix=".jpg")
        try:
            with os.fdopen(handle, "wb") as out:
                image.save(out, "JPEG", quality=82)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def recent_results(log_path: Path, keep: int) -> list[Result]:
    """The tail of the results log, so a page (and the tray's menu) is not empty after a
    restart; [] when it cannot be read (the service reports a broken log when it opens it)."""
    from teddywatch.ledger import read_results

    try:
        return list(deque(read_results(log_path), maxlen=keep))
    except Exception as exc:
        log.debug("cannot read recent results from %s: %s", log_path, exc)
        return []


class GallerySink:
    """The Sink for the service: `handle` only remembers; a writer thread rewrites the page once
    results stop arriving (a batch ended), or every `max_delay` seconds during a long burst, so
    thumbnailing never slows the worker and a burst of 500 files is not 500 page writes."""

    name = "gallery"
    required = False

    def __init__(self, gallery: Gallery, *, quiet_seconds: float = 0.5,
                 max_delay: float = 5.0) -> None:
        self.gallery = gallery
        self.quiet_seconds, self.max_delay = quiet_seconds, max_delay
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._dirty = False
        self._thread = threading.Thread(target=self._run, name="teddywatch-gallery", daemon=True)
        self._thread.start()

    def handle(self, result: Result) -> Result:
        self.gallery.add(result)
        self._dirty = True
        self._wake.set()
        return result

    def refresh(self) -> None:
        """Ask for a rewrite without a new result (e.g. results read back at start)."""
        self._dirty = True
        self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, then stop the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        # Only _wait_for_quiet and _write clear _wake, and both run before the stop check.
        while not self._stop.is_set():
            self._wake.wait()  # no timeout: an idle gallery costs no wakeups
            if self._stop.is_set():
                break
            self._wait_for_quiet()
            self._write()
        if self._dirty:
            self._write()

    def _wait_for_quiet(self) -> None:
        started = time.monotonic()
        while time.monotonic() - started < self.max_delay:
            self._wake.clear()
            if self._stop.wait(self.quiet_seconds) or not self._wake.is_set():
                return

    def _write(self) -> None:
        self._wake.clear()
        self._dirty = False
        try:
            self.gallery.write()
        except Exception:  # a full disk must not stop the service; the next batch retries
            log.exception("could not write the gallery page %s", self.gallery.page)
