"""Decoding in processes that can be killed: no file stalls the others.

A file can make Pillow work for a long time (a TIFF with a million strips takes seconds and
hundreds of MB before its first pixel). Python threads cannot be stopped, so files are decoded
in a few decoder processes (`teddywatch.decodechild`; as many as there were decode threads,
`imaging.DECODE_THREADS`), and a decode that runs past the time limit (`[decode]
time_limit_seconds`, default 5 s) is abandoned: that process is killed, the file gets an `error`
row ("took longer than 5 s to decode"), and a fresh process takes the files after it. They wait
at most the limit; meanwhile the other decoder keeps working. A decoder that crashes (a segfault
in a library) costs only its file too.

`DecoderPool` keeps the processes (`teddywatch.decoderprocess`, one seen from the app) between
batches; `teddywatch.dispatch` hands a batch's files to them and times each. They are started
ahead (`start`) so their imports overlap the model loading, share the app's one
`pixelbudget.BUDGET` for large frames (each asks over its socket), send their log records back
to the app's log, and end on their own after a minute without work (so an idle service holds
none) or when the app closes its end. The pixels come back through a shared file: the reduced
image only (`shrink`), at most a few MB.

With `time_limit_seconds = 0`, or where a decoder process cannot be started (said once in the
log), files are decoded on threads in the app's own process, without a limit (`imaging`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Iterator, Sequence

from teddywatch import heap, imaging
from teddywatch.decoderprocess import DecoderProcess
from teddywatch.dispatch import Outcome, decode_many
from teddywatch.imaging import DECODE_THREADS
from teddywatch.pixelbudget import BUDGET, Budget

log = logging.getLogger(__name__)
# The app's threads share one malloc arena and keep 8 MB of freed heap: the decoded images
# that come back from the decoder processes are then made without faulting in every page.
heap.few_arenas()
heap.keep_freed_heap(8 * 1024 * 1024)

#: The default per-file time limit in seconds (`[decode] time_limit_seconds`).
TIME_LIMIT_SECONDS = 5.0
#: A decoder process ends after this long without a file (an idle service holds none).
IDLE_SECONDS = 60.0

_limit = TIME_LIMIT_SECONDS


def set_time_limit(seconds: float) -> None:
    """The per-file limit (validated in config); 0 decodes in this process, without a limit."""
    global _limit
    _limit = seconds


def time_limit() -> float:
    return _limit


def decode_all(paths: Sequence[str | os.PathLike[str]], min_size: int = 224) -> Iterator[Outcome]:
    """`imaging.decode` each path, in order: (image or exception, seconds). Exceptions are
    returned, not raised, so one bad file never stops the others; one slow file delays the rows
    after it by at most the time limit."""
    limit = _limit
    if limit <= 0 or POOL.broken:
        yield from imaging.decode_all(paths, min_size)
    elif paths:
        yield from POOL.decode_many(paths, min_size, limit)


def start() -> None:
    """Start the decoder processes now (their imports overlap whatever the app does next)."""
    if _limit > 0:
        POOL.start()


def stop() -> None:
    """End the decoder processes (new ones start when a file comes); for shutdown and tests."""
    POOL.close()


class DecoderPool:
    """Up to `size` decoder processes, lent to one batch at a time each; each process ends after
    `idle_seconds` without a file."""

    def __init__(self, size: int, idle_seconds: float = IDLE_SECONDS) -> None:
        self.size = size
        self.idle_seconds = idle_seconds
        self.broken = ""  # why decoder processes cannot be used here ("" while they can)
        self._idle: list[DecoderProcess] = []
        self._busy = 0
        self._generation = 0
        self._changed = threading.Condition()

    def decode_many(self, paths: Sequence[str | os.PathLike[str]], min_size: int, limit: float,
                    budget: Budget = BUDGET) -> list[Outcome]:
        """(image or exception, seconds) for each path, in order (`dispatch.decode_many`)."""
        return decode_many(self, paths, min_size, limit, budget)

    def decode(self, path: str | os.PathLike[str], min_size: int, limit: float,
               budget: Budget = BUDGET) -> Outcome:
        return self.decode_many([path], min_size, limit, budget)[0]

    def start(self) -> None:
        with self._changed:
            while not self.broken and len(self._idle) + self._busy < self.size:
                process = self._spawn()
                if process is None:
                    return
                self._idle.append(process)

    def close(self) -> None:
        """End the idle processes now, and the lent ones when they come back."""
        with self._changed:
            self._generation += 1
            idle, self._idle = self._idle, []
        for process in idle:
            process.close()

    def take(self, count: int, wait: bool = True) -> list[DecoderProcess]:
        """Up to `count` processes: waits for the first while all are lent (unless not
        `wait`); [] once the pool has given up."""
        taken: list[DecoderProcess] = []
        with self._changed:
            while not taken and not self.broken:
                while len(taken) < count and self._idle:
                    process = self._idle.pop()
                    if process.alive:
                        taken.append(process)
                    else:
                        process.kill()  # ended after a quiet minute: reap it
                while len(taken) < count and self._busy + len(taken) < self.size:
                    process = self._spawn()
                    if process is None:
                        break
                    taken.append(process)
                if not taken and not self.broken:
                    if not wait:
                        break
                    self._changed.wait()
            self._busy += len(taken)
        return taken

    def give_back(self, process: DecoderProcess) -> None:
        with self._changed:
            self._busy -= 1
            keep = process.alive and process.generation == self._generation
            if keep:
                self._idle.append(process)
            self._changed.notify()
        if not keep:
            process.close()

    def replace(self, process: DecoderProcess) -> DecoderProcess | None:
        """A fresh process in place of one that was killed; None once the pool has given up."""
        process.kill()
        with self._changed:
            fresh = None if self.broken else self._spawn()
            if fresh is None:
                self._busy -= 1
                self._changed.notify_all()
            return fresh

    def give_up(self, reason: str) -> None:
        """Decoder processes do not work here: decode in this process from now on."""
        with self._changed:
            if not self.broken:
                self.broken = f"the decoder process does not work here ({reason})"
                self._warn()
            self._changed.notify_all()

    def _spawn(self) -> DecoderProcess | None:
        try:
            return DecoderProcess(self.idle_seconds, self._generation)
        except (OSError, ValueError) as exc:  # no fork, no exec, no pass_fds (Windows)
            self.broken = f"cannot start a decoder process: {exc}"
            self._warn()
            return None

    def _warn(self) -> None:
        log.error("%s; decoding in teddywatch's own process instead, without the time limit",
                  self.broken)


POOL = DecoderPool(DECODE_THREADS)
atexit.register(POOL.close)
