"""Files to decoder processes and back: each file timed, a slow one given up, the order kept.

`decode_many` runs on the thread that wants the images (a batch of the watch service's worker,
or of `teddywatch classify`), with the decoder processes it took from the pool. While files are
plenty it keeps up to four queued at each process (so a process goes from one file to the next
without waiting for the app, which reads several answers each time it wakes), at the end one (so
the last files go to whichever is free first), and it lends a process back as soon as it has no
file of this batch left (the next batch may be waiting for it). It reads their answers as they
come (`multiprocessing.connection.wait`: one thread, no hand-off between threads) and answers
their questions: room in `pixelbudget.BUDGET` for a large frame (given when it fits, tried again
meanwhile) and log records to log. A process with files holds `SMALL_FRAME` bytes of the budget
for the frames it decodes without asking, so the frames of all decoder processes together stay
within the budget.

A file's time starts when its process begins it (the previous file's answer, or the process
saying it is ready) and stops while it waits for room in the budget. Past the limit the process
is killed, the file gets its reason, and the files queued behind it go to a fresh process. A
process that dies on a file (a crash in a library) costs that file an `error` row the same way.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Sequence

from PIL import Image

from teddywatch import imaging
from teddywatch.decodechild import PLACES
from teddywatch.decoderprocess import SMALL_FRAME, DecoderProcess, ended, log_from_child
from teddywatch.imaging import DecodeError
from teddywatch.pixelbudget import Budget

if TYPE_CHECKING:
    from teddywatch.decoders import DecoderPool

log = logging.getLogger("teddywatch.decoders")

Outcome = tuple[Image.Image | BaseException, float]

#: Files queued at one process at a time while there are plenty: it goes from one to the next
#: without waiting for the app, and the app reads several answers each time it wakes.
DEPTH = PLACES  # (not more: a decoder process writes its images to that many places in turn)
#: How often a frame waiting for room in the budget asks again (the room is made elsewhere).
BUDGET_RETRY = 0.02
#: How long a new decoder process may take to import Pillow and say it is ready.
STARTUP_SECONDS = 60.0


def too_slow(limit: float) -> str:
    """The reason in the error row of a file that ran past the time limit."""
    return f"took longer than {limit:g} s to decode (decode.time_limit_seconds in the config)"


@dataclass
class _Turn:
    """One file at one process."""

    index: int
    started: float = 0.0          # perf_counter when its process began it
    deadline: float = math.inf    # monotonic; inf until its process begins it
    asked: int = 0                # bytes of budget asked for and not granted yet
    asked_since: float = 0.0
    held: int = 0                 # bytes of budget granted and not given back yet
    answered: bool = False        # the process said something about it


@dataclass
class _Slot:
    process: DecoderProcess
    turns: deque[_Turn] = field(default_factory=deque)
    ready_by: float = math.inf    # a new process must be ready by then
    allowance: int = 0            # budget held for its small frames while it has files


def decode_many(pool: DecoderPool, paths: Sequence[str | os.PathLike[str]], min_size: int,
                limit: float, budget: Budget) -> list[Outcome]:
    """(image or exception, seconds) for each path, in order."""
    return _Run(pool, [os.fspath(path) for path in paths], min_size, limit, budget).go()


class _Run:
    def __init__(self, pool: DecoderPool, paths: list[str], min_size: int, limit: float,
                 budget: Budget) -> None:
        self.pool, self.paths, self.min_size = pool, paths, min_size
        self.limit, self.budget = limit, budget
        self.outcomes: list[Outcome | None] = [None] * len(paths)
        self.todo = deque(range(len(paths)))
        self.slots = [self._slot(process) for process in pool.take(min(len(paths), pool.size))]

    def go(self) -> list[Outcome]:
        try:
            while self.todo or self._queued():
                if not self.slots:  # no decoder process works here: the rest in this process
                    self._decode_here()
                    break
                self._feed()
                if self._queued():
                    self._wait()
                elif self.todo:  # no room in the budget even for a small frame, yet
                    time.sleep(BUDGET_RETRY)
        finally:
            self._finish()
        return [outcome for outcome in self.outcomes if outcome is not None]

    # --- sending ----------------------------------------------------------------------------

    def _feed(self) -> None:
        """Queue files at the processes held; take more that are free now, and give back each
        one that has nothing left to do here (another batch may be waiting for it)."""
        if len(self.todo) > len(self.slots) and len(self.slots) < self.pool.size:
            more = min(len(self.todo), self.pool.size) - len(self.slots)
            self.slots += [self._slot(process) for process in self.pool.take(more, wait=False)]
        for slot in list(self.slots):
            if not slot.turns and not self.todo:
                self.slots.remove(slot)
                self.pool.give_back(slot.process)
                continue
            if self.todo and not slot.allowance:
                if slot.turns:  # its file waits for room for a large frame: nothing more now
                    continue
                slot.allowance = self.budget.try_acquire(SMALL_FRAME) or 0
                if not slot.allowance:
                    continue  # a large frame elsewhere has the budget: wait for room
            while self.todo and len(slot.turns) < self._depth():
                turn = _Turn(self.todo.popleft())
                try:
                    slot.process.send(self.paths[turn.index], self.min_size)
                except OSError:  # it ended (a quiet minute) before this call took it
                    self.todo.appendleft(turn.index)
                    self._lost(slot, slot.process.kill())
                    break
                slot.turns.append(turn)
                if len(slot.turns) == 1 and slot.process.ready:
                    self._begin(turn)

    def _depth(self) -> int:
        """Files to queue at each process: an even share of what is left, at most DEPTH (the
        last files go to whichever process is free first)."""
        left = len(self.todo) + sum(len(slot.turns) for slot in self.slots)
        return max(1, min(DEPTH, left // max(1, len(self.slots))))

    def _begin(self, turn: _Turn) -> None:
        turn.started = time.perf_counter()
        turn.deadline = time.monotonic() + self.limit

    # --- waiting and reading ----------------------------------------------------------------

    def _wait(self) -> None:
        busy = [slot for slot in self.slots if slot.turns]
        until = min(min(slot.turns[0].deadline, slot.ready_by) for slot in busy)
        if any(slot.turns[0].asked for slot in busy):
            until = min(until, time.monotonic() + BUDGET_RETRY)
        timeout = None if until == math.inf else max(0.0, until - time.monotonic())
        ready = wait([slot.process.conn for slot in busy], timeout)
        for slot in busy:
            if slot.process.conn in ready:
                self._read(slot)
        now = time.monotonic()
        for slot in [slot for slot in self.slots if slot.turns]:
            front = slot.turns[0]
            if front.asked:
                self._try_grant(slot, front)
            elif now >= slot.ready_by:
                self._lost(slot, slot.process.kill(), f"not ready after {STARTUP_SECONDS:g} s")
            elif now >= front.deadline:
                self._too_slow(slot)

    def _read(self, slot: _Slot) -> None:
        """Every message the process has sent so far."""
        while slot.turns:
            try:
                message = slot.process.receive()
            except (EOFError, OSError):
                self._died(slot)
                return
            self._handle(slot, message)
            if slot.process.conn.closed or not slot.process.conn.poll(0):
                return

    def _handle(self, slot: _Slot, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            slot.process.ready, slot.ready_by = True, math.inf
            self._begin(slot.turns[0])
            return
        front = slot.turns[0]
        front.answered = True
        if kind == "budget":  # a large frame: it waits for room, and that is not its time
            front.asked, front.asked_since = message[1], time.monotonic()
            self.budget.release(slot.allowance)  # (holding it while waiting could deadlock)
            slot.allowance = 0
            self._try_grant(slot, front)
        elif kind == "release":  # the frame is gone: back to the allowance for small ones
            slot.allowance = self.budget.try_acquire(SMALL_FRAME, giving_back=message[1]) or 0
            if not slot.allowance:
                self.budget.release(message[1])
            front.held -= message[1]
        elif kind == "log":
            log_from_child(*message[1:])
        elif kind == "image":
            self._done(slot, slot.process.image(*message[1:]))
        elif kind == "failed":
            self._done(slot, DecodeError(message[1]))
        elif kind == "bug":
            log.error("unexpected error decoding %s: %s", self.paths[front.index], message[1])
            self._done(slot, DecodeError(f"cannot decode: {message[1]}"))
        else:
            raise RuntimeError(f"decoder protocol: unexpected {kind!r}")

    def _try_grant(self, slot: _Slot, turn: _Turn) -> None:
        granted = self.budget.try_acquire(turn.asked)
        if granted is None:
            return
        turn.held += granted
        turn.asked = 0
        turn.deadline += time.monotonic() - turn.asked_since
        try:
            slot.process.grant(granted)
        except OSError:  # it died meanwhile; reading finds out
            pass

    # --- outcomes ---------------------------------------------------------------------------

    def _done(self, slot: _Slot, outcome: Image.Image | BaseException) -> None:
        turn = slot.turns.popleft()
        self.budget.release(turn.held)
        self.outcomes[turn.index] = (outcome, time.perf_counter() - turn.started)
        if slot.turns:
            self._begin(slot.turns[0])
        else:
            self._let_go(slot)

    def _let_go(self, slot: _Slot) -> None:
        """Give back the budget a slot held for small frames (it has no file now)."""
        self.budget.release(slot.allowance)
        slot.allowance = 0

    def _too_slow(self, slot: _Slot) -> None:
        slot.process.kill()
        self._done(slot, DecodeError(too_slow(self.limit)))
        self._replace(slot)

    def _died(self, slot: _Slot) -> None:
        code = slot.process.kill()
        front = slot.turns[0]
        if not slot.process.ready or (not front.answered and code == 0):
            self._lost(slot, code)  # it never took the file: not the file's fault
        else:
            self._done(slot, DecodeError(f"the decoder crashed on this file ({ended(code)})"))
            self._replace(slot)

    def _lost(self, slot: _Slot, code: int, why: str = "") -> None:
        """The process ended before it took its files: they go to another."""
        if not slot.process.ready:
            self.pool.give_up(f"it ended before it was ready: {why or ended(code)}")
        self._replace(slot)

    def _replace(self, slot: _Slot) -> None:
        """A fresh process for the files queued at a killed one (none if the pool gave up)."""
        for turn in reversed(slot.turns):
            self.budget.release(turn.held)
            self.todo.appendleft(turn.index)
        slot.turns.clear()
        self._let_go(slot)
        fresh = self.pool.replace(slot.process)
        if fresh is None:
            self.slots.remove(slot)
        else:
            self.slots[self.slots.index(slot)] = self._slot(fresh)

    def _slot(self, process: DecoderProcess) -> _Slot:
        ready_by = math.inf if process.ready else time.monotonic() + STARTUP_SECONDS
        return _Slot(process, ready_by=ready_by)

    def _queued(self) -> bool:
        return any(slot.turns for slot in self.slots)

    def _decode_here(self) -> None:
        while self.todo:
            index = self.todo.popleft()
            self.outcomes[index] = imaging.timed_decode(self.paths[index], self.min_size)

    def _finish(self) -> None:
        for slot in self.slots:
            for turn in slot.turns:
                self.budget.release(turn.held)
            self._let_go(slot)
            if slot.turns:  # interrupted (an exception here): its answers would be stale
                slot.process.kill()
            self.pool.give_back(slot.process)
