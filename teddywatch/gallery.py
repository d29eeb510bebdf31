"""A static HTML page of the most recent results, with thumbnails, for people to look through.

One self-contained file in the user data dir (no server, no external assets; the thumbnails sit
beside it in `thumbs/`), rewritten atomically so a browser never shows half a page. Every file
name and label comes from the user's disk, so every one goes through html.escape.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Iterable

from teddywatch import resources
from teddywatch.csvcells import printable
from teddywatch.results import ERROR, Result, format_confidence

log = logging.getLogger(__name__)

PAGE_NAME = "gallery.html"
VERSION_NAME = "gallery-version.js"
RELOAD_CHECK_MS = 2000  # how often an open page looks for a newer version of itself
THUMBS_DIR = "thumbs"
THUMB_SIZE = 160


def default_page() -> Path:
    return resources.data_dir() / PAGE_NAME


def thumb_key(result: Result) -> str:
    """Cache key: the same path with a new size or mtime is a new picture."""
    raw = f"{result.path}\0{result.size}\0{result.mtime_ns}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:32]


class Gallery:
    """Keeps the last `items` Results; `write()` renders them. Thread-safe: a sink calls `add`."""

    def __init__(self, page: Path | None = None, *, items: int = 200,
                 thumb_size: int = THUMB_SIZE) -> None:
        self.page = page or default_page()
        self.thumbs = self.page.parent / THUMBS_DIR
        self.version_file = self.page.parent / VERSION_NAME
        self.thumb_size = thumb_size
        self._results: deque[Result] = deque(maxlen=items)
        self._failed: set[str] = set()  # thumbnails that could not be made: do not retry
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
        self._prune(set(thumbs))
        log.debug("gallery: wrote %d results to %s", len(shown), self.page)
        return self.page

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


# --- the page --------------------------------------------------------------------------------

def _e(value: object) -> str:
    """HTML-escaped, and a name that is not UTF-8 shown with its odd bytes as \\xff (the page
    is UTF-8: such a name could not be written at all)."""
    return html.escape(printable(str(value)), quote=True)


def _file_uri(path: str) -> str:
    try:
        return Path(path).absolute().as_uri()
    except ValueError:
        return ""


def render(results: list[Result], thumbs: dict[str, str | None], version: str = "") -> str:
    """The whole page for `results` (already newest first); `thumbs` maps thumb_key to a src."""
    counts = Counter(r.label for r in results)
    buttons = [f'<button type="button" data-label="" aria-pressed="true">all '
               f'<span>{len(results)}</span></button>']
    buttons += [f'<button type="button" data-label="{_e(label)}" aria-pressed="false">'
                f'{_e(label)} <span>{count}</span></button>'
                for label, count in sorted(counts.items())]
    cards = "\n".join(_card(r, thumbs.get(thumb_key(r))) for r in results)
    empty = "" if results else '<p class="empty">No results yet: drop an image into a ' \
        'watched folder.</p>'
    script = _SCRIPT.replace("__VERSION__", json.dumps(version)) \
        .replace("__VERSION_FILE__", json.dumps(VERSION_NAME)) \
        .replace("__CHECK_MS__", str(RELOAD_CHECK_MS))
    return _PAGE.format(count=len(results), buttons="\n".join(buttons), cards=cards,
                        empty=empty, style=_STYLE, script=script)


def _card(result: Result, thumb: str | None) -> str:
    where = result.moved_to or result.path
    name = os.path.basename(where) or where
    picture = (f'<img src="{_e(thumb)}" alt="{_e(name)}">' if thumb
               else '<span class="nothumb">no preview</span>')
    uri = _file_uri(where)
    if uri:
        picture = f'<a href="{_e(uri)}">{picture}</a>'
    # Formatted here, not in the page's script: the same figure as the tray and notifications.
    shown = "" if result.status == ERROR else \
        f' <span class="confidence">{_e(format_confidence(result.confidence))}</span>'
    detail = f'<span class="detail">{_e(result.detail)}</span>' if result.detail else ""
    stamp = result.time
    return (f'<figure class="card {_e(result.status)}" data-label="{_e(result.label)}">'
            f'{picture}<figcaption><b>{_e(result.label)}</b>{shown} '
            f'<span class="status">{_e(result.status)}</span>'
            f'<span class="name" title="{_e(where)}">{_e(name)}</span>'
            f'<time datetime="{_e(stamp.isoformat())}">{_e(stamp.strftime("%Y-%m-%d %H:%M:%S"))}'
            f'</time>{detail}</figcaption></figure>')


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>teddywatch: the last {count} results</title>
<style>{style}</style>
</head>
<body>
<header><h1>teddywatch</h1><p>The last {count} results, newest first.</p>
<nav id="filters" aria-label="Filter by label">
{buttons}
</nav></header>
{empty}
<main id="cards">
{cards}
</main>
<script>{script}</script>
</body>
</html>
"""

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 0 1.5em 2em; background: #faf8f5; color: #222; }
header h1 { margin: .6em 0 0; font-size: 1.4em; } header p { margin: .2em 0 .6em; color: #666; }
#filters button { border: 1px solid #bbb; background: #fff; border-radius: 1em; padding: .2em .8em;
  margin: 0 .3em .3em 0; cursor: pointer; font: inherit; }
#filters button[aria-pressed="true"] { background: #8b5e3c; color: #fff; border-color: #8b5e3c; }
#filters span { opacity: .7; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 12px; }
.card { margin: 0; background: #fff; border: 1px solid #e2ddd6; border-radius: 8px; padding: 8px; }
.card img, .nothumb { display: block; width: 160px; height: 160px; object-fit: contain;
  margin: 0 auto 6px; }
.nothumb { background: #eee; color: #888; line-height: 160px; text-align: center; }
figcaption { display: flex; flex-wrap: wrap; gap: 0 .4em; align-items: baseline; }
.status { font-size: .8em; padding: 0 .4em; border-radius: .6em; background: #dfe; }
.unsure .status { background: #ffe9b0; } .error .status { background: #fcc; }
.name, time, .detail { flex-basis: 100%; font-size: .85em; color: #555; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.detail { color: #a33; white-space: normal; }
[hidden] { display: none !important; }
"""

# Plain JS: a button per label shows only that label's cards (kept across reloads), and the page
# reloads itself when teddywatch rewrote it: every few seconds it loads gallery-version.js (a
# <script>, which file:// pages may load where fetch() is refused) and compares versions.
_SCRIPT = """
(function () {
  var buttons = document.querySelectorAll('#filters button');
  var cards = document.querySelectorAll('#cards .card');
  function show(want) {
    buttons.forEach(function (b) { b.setAttribute('aria-pressed', String(b.dataset.label === want)); });
    cards.forEach(function (card) { card.hidden = want !== '' && card.dataset.label !== want; });
  }
  buttons.forEach(function (button) {
    button.addEventListener('click', function () {
      try { sessionStorage.setItem('teddywatch-filter', button.dataset.label); } catch (e) {}
      show(button.dataset.label);
    });
  });
  var kept = null;
  try { kept = sessionStorage.getItem('teddywatch-filter'); } catch (e) {}
  if (kept && document.querySelector('#filters button[data-label="' + CSS.escape(kept) + '"]')) {
    show(kept);
  }
  var version = __VERSION__;
  window.teddywatchVersion = function (latest) {
    if (latest !== version) { location.reload(); }
  };
  setInterval(function () {
    var probe = document.createElement('script');
    probe.src = __VERSION_FILE__ + '?' + Date.now();
    probe.onload = probe.onerror = function () { probe.remove(); };
    document.head.appendChild(probe);
  }, __CHECK_MS__);
})();
"""
