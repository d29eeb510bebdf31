"""Watched folders -> settled files -> one Job per file on a bounded queue.

Three threads meet here, each owning its part:
- watchdog's observer thread runs `_Handler`: it only filters names and notes paths (cheap).
- the `Watcher` thread settles noted paths (close-after-write on Linux, stable size and mtime
  elsewhere or as a fallback), runs the catch-up and reconciliation scans, and retries folders
  that are missing; it offers settled files to the `JobQueue` and never blocks on it.
- the worker (worker.py) takes Jobs off the `JobQueue`.

A file is identified by path + size + mtime (`FileId`): the queue refuses a FileId it has
already queued or the ledger already holds, so create + modify + close give one job and a
restart does not classify logged files again, while an edited file is classified again.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileAttribEvent, FileClosedEvent,
                             FileCreatedEvent,
                             FileModifiedEvent, FileMovedEvent, FileSystemEvent,
                             FileSystemEventHandler)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from teddywatch.config import WatchConfig
from teddywatch.results import FileId, Job

log = logging.getLogger(__name__)

#: Names that are downloads or saves in progress; they are picked up once renamed into place.
PARTIAL_SUFFIXES = (".part", ".crdownload", ".tmp", ".partial", ".download", ".opdownload", "~")
#: How often missing or vanished folders are looked for again.
RETRY_SECONDS = 2.0
#: Only these events matter; leaving out opened/closed-no-write keeps our own reads silent.
EVENT_FILTER = [FileCreatedEvent, FileModifiedEvent, FileAttribEvent, FileClosedEvent,
                FileMovedEvent, DirCreatedEvent, DirMovedEvent, DirDeletedEvent]


def is_partial(name: str) -> bool:
    """Dot files and names of downloads still in progress."""
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


def wanted(path: str, root: str, watch: WatchConfig) -> bool:
    """Does `path` (inside `root`) name a file this watch should classify?"""
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    if rel.startswith("..") or (len(parts) > 1 and not watch.recursive):
        return False
    if any(is_partial(p) for p in parts if p.startswith(".")) or is_partial(parts[-1]):
        return False  # hidden folders (.thumbnails, .git) and partial names
    name = parts[-1].lower()
    if not any(fnmatch.fnmatchcase(name, p.lower()) for p in watch.patterns):
        return False
    rel_posix = "/".join(parts)
    return not any(fnmatch.fnmatchcase(parts[-1], p) or fnmatch.fnmatchcase(rel_posix, p)
                   for p in watch.ignore)


# --- the queue ------------------------------------------------------------------------------

class JobQueue:
    """A bounded queue of Jobs with one Job per FileId, ever (queued or already logged).

    `offer` never blocks: when full it counts an overflow and refuses, and the watcher's next
    scan offers the file again once there is room.
    """

    def __init__(self, maxsize: int, done: Iterable[FileId] = ()) -> None:
        self.maxsize = maxsize
        self._items: deque[Job] = deque()
        self._known: set[FileId] = set(done)
        self._cond = threading.Condition()
        self._closed = False
        self.overflows = 0

    def offer(self, file: FileId, queued_at: float | None = None) -> bool:
        with self._cond:
            if file in self._known or self._closed:
                return False
            if len(self._items) >= self.maxsize:
                self.overflows += 1
                return False
            self._items.append(Job(file, time.monotonic() if queued_at is None else queued_at))
            self._known.add(file)
            self._cond.notify()
            return True

    def record_overflow(self) -> None:
        with self._cond:
            self.overflows += 1

    def known(self, file: FileId) -> bool:
        with self._cond:
            return file in self._known

    def take(self, max_items: int, timeout: float) -> list[Job]:
        """Up to `max_items` waiting Jobs; waits up to `timeout` for the first one."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            count = min(max_items, len(self._items))
            return [self._items.popleft() for _ in range(count)]

    def unget(self, jobs: Sequence[Job]) -> None:
        """Put taken Jobs back at the front, in order (a worker paused while taking)."""
        with self._cond:
            self._items.extendleft(reversed(jobs))
            self._cond.notify()

    def close(self) -> None:
        """Wake any taker and refuse further offers; queued Jobs are left for the next start."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def has_room(self) -> bool:
        return len(self) < self.maxsize


# --- the observer side ----------------------------------------------------------------------

class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: filter, note, return. Nothing here reads a file."""

    def __init__(self, watcher: "Watcher", folder: "_Folder") -> None:
        self.watcher = watcher
        self.folder = folder

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirDeletedEvent):
            if os.fsdecode(event.src_path) == self.folder.root:
                self.watcher.request_check()
            return
        if event.is_directory:
            self._folder_with_an_image_name(event)
            return
        if isinstance(event, FileMovedEvent):
            path = os.fsdecode(event.dest_path)  # moved away (dest empty): nothing to do
            kind = _READY
        elif isinstance(event, FileClosedEvent):
            path, kind = os.fsdecode(event.src_path), _READY
        elif isinstance(event, (FileCreatedEvent, FileModifiedEvent)):
            path, kind = os.fsdecode(event.src_path), _WRITING
        elif isinstance(event, FileAttribEvent):  # chmod/utime: no close event will follow
            path, kind = os.fsdecode(event.src_path), _TOUCHED
        else:
            return
        if path and wanted(path, self.folder.root, self.folder.config):
            self.watcher.note(path, kind, self.folder.closes and kind == _WRITING)


    def _folder_with_an_image_name(self, event: FileSystemEvent) -> None:
        """A folder named like an image where folders are not walked gets its error row: in a
        flat watch any folder, in a recursive one a link to a folder (never followed, as the scan
        does not follow it either; watchdog reports such a link as a folder)."""
        if not isinstance(event, (DirCreatedEvent, DirMovedEvent)):
            return
        path = os.fsdecode(event.dest_path if isinstance(event, DirMovedEvent) else event.src_path)
        if self.folder.config.recursive and not os.path.islink(path):
            return
        if path and wanted(path, self.folder.root, self.folder.config):
            self.watcher.note(path, _READY, False)


_READY, _WRITING, _TOUCHED, _SCANNED = "ready", "writing", "touched", "scanned"


@dataclass
class _Pending:
    kind: str
    closes: bool  # will a close-after-write event come (inotify)?
    first_seen: float
    last: tuple[int, int] | None = None  # (size, mtime_ns) at the last look
    stable_since: float = 0.0


@dataclass
class _Folder:
    config: WatchConfig
    root: str
    observer: BaseObserver
    closes: bool
    watch: ObservedWatch | None = None
    identity: tuple[int, int] | None = None
    reported_missing: bool = False


# --- the watcher thread ---------------------------------------------------------------------

@dataclass
class WatcherStatus:
    watching: int
    missing: tuple[str, ...]
    pending: int
    overflows: int


@dataclass
class Watcher:
    """Owns the observers, the settling of noted paths, and the scans. See the module doc."""

    watches: Sequence[WatchConfig]
    jobs: JobQueue
    settle_seconds: float = 1.0
    rescan_seconds: float = 300.0
    state_file: Path | None = None
    on_change: Callable[[], None] = lambda: None
    max_pending: int = 10_000
    _folders: list[_Folder] = field(default_factory=list, init=False)
    _pending: dict[str, _Pending] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _wake: threading.Event = field(default_factory=threading.Event, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _scan_requested: bool = field(default=True, init=False)  # catch-up on start
    _check_requested: bool = field(default=False, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _observers: dict[float | None, BaseObserver] = field(default_factory=dict, init=False)
    _first_watched: dict[str, int] = field(default_factory=dict, init=False)
    _overflows_seen: int = field(default=0, init=False)
    ready: threading.Event = field(default_factory=threading.Event, init=False)

    # --- called from other threads --------------------------------------------------------

    def note(self, path: str, kind: str, closes: bool) -> None:
        """A file event (observer thread): remember the path, wake the settler if ready."""
        now = time.monotonic()
        with self._lock:
            entry = self._pending.get(path)
            if entry is None:
                if len(self._pending) >= self.max_pending:
                    self.jobs.record_overflow()  # the next scan finds it
                    return
                self._pending[path] = _Pending(kind, closes, now)
            elif kind not in (_TOUCHED, _SCANNED):
                # The latest event wins (a write after a close means wait again), but a
                # metadata change or a scan never turns "being written" into "settle by time".
                entry.kind, entry.closes = kind, closes
        if kind == _READY:
            self._wake.set()

    def request_scan(self) -> None:
        with self._lock:
            self._scan_requested = True
        self._wake.set()

    def request_check(self) -> None:
        with self._lock:
            self._check_requested = True
        self._wake.set()

    def status(self) -> WatcherStatus:
        with self._lock:
            watching = sum(1 for f in self._folders if f.watch is not None)
            missing = tuple(f.root for f in self._folders if f.watch is None)
            return WatcherStatus(watching, missing, len(self._pending), self.jobs.overflows)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start observing every folder that exists now; the thread then catches up."""
        self._load_state()
        for config in self.watches:
            observer = self._observer_for(config)
            closes = not config.poll and _has_close_events(observer)
            self._folders.append(_Folder(config, os.path.abspath(config.path), observer, closes))
        for folder in self._folders:
            self._schedule(folder)
        for observer in self._observers.values():
            observer.start()
        self._save_state()
        status = self.status()
        extra = f" ({len(status.missing)} missing, retrying)" if status.missing else ""
        log.info("watching %d folder%s%s", status.watching,
                 "" if status.watching == 1 else "s", extra)
        _InotifyOverflow.install(self)
        self.ready.set()
        self._wake.set()  # catch up at once
        self._thread = threading.Thread(target=self._run, name="teddywatch-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop observing first (data flows from here), then this thread."""
        _InotifyOverflow.remove(self)
        self._stop.set()
        self._wake.set()
        for observer in self._observers.values():
            observer.stop()
        deadline = time.monotonic() + timeout
        for observer in self._observers.values():
            if observer.is_alive():
                observer.join(max(0.1, deadline - time.monotonic()))
        if self._thread is not None:
            while self._thread.is_alive() and time.monotonic() < deadline:
                self._thread.join(0.5)

    def _observer_for(self, config: WatchConfig) -> BaseObserver:
        key = config.poll_seconds if config.poll else None
        if key not in self._observers:
            if key is None:
                self._observers[key] = _native_observer()
            else:
                self._observers[key] = PollingObserver(timeout=key)
        return self._observers[key]

    # --- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        next_check = time.monotonic() + RETRY_SECONDS
        next_rescan = time.monotonic() + self.rescan_seconds if self.rescan_seconds else None
        while not self._stop.is_set():
            self._wake.wait(self._tick())
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                now = time.monotonic()
                if now >= next_check or self._take_flag("_check_requested"):
                    self._check_folders()
                    next_check = now + RETRY_SECONDS
                self._settle(now)
                overflowed = self.jobs.overflows != self._overflows_seen
                if self._take_flag("_scan_requested") or (
                        next_rescan is not None and now >= next_rescan) or (
                        overflowed and len(self.jobs) <= self.jobs.maxsize // 2):
                    self._overflows_seen = self.jobs.overflows
                    self.scan()
                    if self.rescan_seconds:
                        next_rescan = time.monotonic() + self.rescan_seconds
            except Exception:  # a surprise here must not stop watching
                log.exception("the watcher hit an unexpected error; carrying on")
                self._stop.wait(1.0)

    def _tick(self) -> float:
        """How long to sleep: short while files are settling, longer when idle."""
        with self._lock:
            busy = bool(self._pending)
        if busy:
            return max(0.05, min(0.25, self.settle_seconds / 4))
        return 1.0

    def _take_flag(self, name: str) -> bool:
        with self._lock:
            value = getattr(self, name)
            setattr(self, name, False)
            return value

    # --- settling ---------------------------------------------------------------------------

    def _settle(self, now: float) -> None:
        with self._lock:
            items = list(self._pending.items())
        done: list[tuple[str, _Pending, str]] = []
        for path, entry in items:
            kind = entry.kind
            verdict = self._look(path, entry, now)
            if verdict is None:
                continue
            done.append((path, entry, kind))
            if isinstance(verdict, FileId):
                self.jobs.offer(verdict, entry.first_seen)
        with self._lock:
            for path, entry, kind in done:
                # An event that arrived while we looked changed the kind: look again then.
                if self._pending.get(path) is entry and entry.kind == kind:
                    del self._pending[path]

    def _look(self, path: str, entry: _Pending, now: float) -> FileId | bool | None:
        """A FileId when settled, False to drop (gone, not a file), None to look again later."""
        try:
            st = os.stat(path)
        except OSError:
            try:
                st = os.lstat(path)  # a dangling or looping link: a name to report, at once
            except OSError:
                return False  # gone
            return FileId(path, st.st_size, st.st_mtime_ns)
        file = FileId(path, st.st_size, st.st_mtime_ns)
        if entry.kind == _READY or not stat.S_ISREG(st.st_mode):
            return file  # FIFOs, devices, folders: nothing is written to settle; report now
        current = (st.st_size, st.st_mtime_ns)
        if current != entry.last:
            entry.last, entry.stable_since = current, now
        # With inotify a close event will come; waiting on stability is only the fallback.
        quiet = self.settle_seconds if not entry.closes else max(5.0, 5 * self.settle_seconds)
        if entry.kind == _SCANNED and time.time_ns() - st.st_mtime_ns >= quiet * 1e9:
            return file  # untouched for the whole quiet period already
        if now - entry.stable_since >= quiet:
            return file
        return None

    # --- scans ------------------------------------------------------------------------------

    def scan(self) -> int:
        """Offer every wanted file the queue has not seen; returns how many were offered."""
        offered = 0
        for folder in list(self._folders):
            if folder.watch is None or self._stop.is_set():
                continue
            cutoff = self._first_watched.get(folder.root) if folder.config.skip_existing else None
            for path, st in _walk(folder.root, folder.config.recursive):
                if self._stop.is_set():
                    return offered
                if not wanted(path, folder.root, folder.config):
                    continue
                if cutoff is not None and max(st.st_mtime_ns, st.st_ctime_ns) < cutoff:
                    continue  # existed before this folder was first watched
                file = FileId(path, st.st_size, st.st_mtime_ns)
                if self.jobs.known(file):
                    continue
                if not self.jobs.has_room:
                    self.jobs.record_overflow()  # scan again once the worker has caught up
                    log.debug("queue full during a scan; the rest waits for the next one")
                    return offered
                if time.time_ns() - st.st_mtime_ns >= self.settle_seconds * 1e9:
                    offered += self.jobs.offer(file)
                else:  # may still be being written: settle it like an event
                    self.note(path, _SCANNED, False)
        if offered:
            log.info("catch-up: queued %d file%s the log does not hold", offered,
                     "" if offered == 1 else "s")
        return offered

    # --- folders that come and go -----------------------------------------------------------

    def _schedule(self, folder: _Folder) -> bool:
        try:
            st = os.stat(folder.root)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(folder.root)
            watch = folder.observer.schedule(_Handler(self, folder), folder.root,
                                             recursive=folder.config.recursive,
                                             event_filter=EVENT_FILTER)
        except OSError as exc:
            if not folder.reported_missing:
                log.warning("watch folder %s is not available (%s); will retry every %gs",
                            folder.root, exc.strerror or type(exc).__name__, RETRY_SECONDS)
                folder.reported_missing = True
            return False
        with self._lock:
            folder.watch = watch
            folder.identity = (st.st_dev, st.st_ino)
        self._first_watched.setdefault(folder.root, time.time_ns())
        if folder.reported_missing:
            log.info("watch folder %s is back; watching it again", folder.root)
            folder.reported_missing = False
        return True

    def _check_folders(self) -> None:
        changed = False
        for folder in self._folders:
            if folder.watch is not None and not self._healthy(folder):
                log.warning("watch folder %s went away; will retry every %gs",
                            folder.root, RETRY_SECONDS)
                self._unschedule(folder)
                folder.reported_missing = True
                changed = True
            if folder.watch is None and self._schedule(folder):
                changed = True
                self.request_scan()  # whatever arrived while it was away
                self._save_state()
        if changed:
            self.on_change()

    def _healthy(self, folder: _Folder) -> bool:
        try:
            st = os.stat(folder.root)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != folder.identity:
            return False  # replaced by another folder (a share mounted again, say)
        emitters = [e for e in folder.observer.emitters if e.watch == folder.watch]
        return all(e.is_alive() for e in emitters) and bool(emitters)

    def _unschedule(self, folder: _Folder) -> None:
        watch = folder.watch
        with self._lock:
            folder.watch = None
        if watch is None:
            return
        try:
            folder.observer.unschedule(watch)
        except (KeyError, OSError, RuntimeError):
            log.debug("unscheduling %s", folder.root, exc_info=True)

    # --- skip_existing memory ---------------------------------------------------------------

    def _load_state(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            self._first_watched = {str(k): int(v) for k, v in data["first_watched"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s: cannot read (%s); starting it afresh", self.state_file, exc)

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"first_watched": self._first_watched}, indent=1),
                           encoding="utf-8")
            os.replace(tmp, self.state_file)
        except OSError as exc:
            log.warning("%s: cannot save when folders were first watched: %s",
                        self.state_file, exc)


class _InotifyOverflow(logging.Handler):
    """Rescan as soon as the kernel's inotify queue overflows (events were dropped).

    watchdog only logs the overflow, so this listens to its logger; if the message ever
    changes, the periodic reconciliation scan still catches up, only later.
    """

    LOGGER = "watchdog.observers.inotify_c"

    def __init__(self, watcher: Watcher) -> None:
        super().__init__(logging.WARNING)
        self.watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.watcher.request_scan()

    @classmethod
    def install(cls, watcher: Watcher) -> None:
        logging.getLogger(cls.LOGGER).addHandler(cls(watcher))

    @classmethod
    def remove(cls, watcher: Watcher) -> None:
        logger = logging.getLogger(cls.LOGGER)
        for handler in list(logger.handlers):
            if isinstance(handler, cls) and handler.watcher is watcher:
                logger.removeHandler(handler)


def _walk(root: str, recursive: bool) -> Iterator[tuple[str, os.stat_result]]:
    """(path, stat) for each regular file; unreadable folders are skipped, not fatal."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.debug("cannot list %s: %s", folder, exc)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False) and recursive:
                    if not entry.name.startswith("."):
                        stack.append(entry.path)
                    continue
                try:
                    st = entry.stat()
                except OSError:  # a dangling or looping link: reported, not skipped
                    st = entry.stat(follow_symlinks=False)
                yield entry.path, st  # not only files: `wanted` names get a row each
            except OSError:
                continue


def _native_observer() -> BaseObserver:
    """inotify on Linux with full move events, so a move in from outside is a move (ready)."""
    try:
        from watchdog.observers.inotify import InotifyObserver

        return InotifyObserver(generate_full_events=True)
    except (ImportError, OSError):
        from watchdog.observers import Observer

        return Observer()


def _has_close_events(observer: BaseObserver) -> bool:
    return type(observer).__name__ == "InotifyObserver"
