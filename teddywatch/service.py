"""The watch service: starts and stops the parts in flow order and reports on them.

    watched folders -> Watcher -> JobQueue -> Worker (engine) -> sinks: [plan sort] -> results
    log -> [move] -> [notify]

`Service` is what `teddywatch run` and the tray drive. It knows nothing about the tray: the tray
calls `start/stop/pause/resume/status` and `subscribe`s to be told about each Result and each
status change. `teddywatch.headless.run_headless` runs it without a tray.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable, Union

from teddywatch import decoders
from teddywatch.config import Config
from teddywatch.engines import Engine, load_engine
from teddywatch.teach.auto import AutoLearner
from teddywatch.teach.corrections import Correction
from teddywatch.teach.engine import LearnedEngine, learned_name, with_learning
from teddywatch.teach.learn import LearnReport
from teddywatch.teach.record import correct_file, undo_correction
from teddywatch.imaging import set_max_megapixels
from teddywatch.ledger import Ledger
from teddywatch.results import ERROR, Result, format_confidence
from teddywatch.runlock import RunLock
from teddywatch.sinks import Sink
from teddywatch.watch import JobQueue, Watcher
from teddywatch.worker import Worker

log = logging.getLogger(__name__)

STARTING, WATCHING, PAUSED, STOPPING, STOPPED = "starting", "watching", "paused", "stopping", \
    "stopped"


@dataclass(frozen=True)
class StatusSnapshot:
    """What the tray shows. A copy: reading it never touches the running parts."""

    state: str                          # starting | watching | paused | stopping | stopped
    queue_length: int                   # files not done yet: waiting, plus the batch in hand
    done_today: int                     # rows written today (local date), errors included
    errors_today: int
    last_result: Result | None
    last_error: str                     # "" when nothing went wrong yet
    folders_watched: int
    folders_missing: tuple[str, ...]    # configured folders not available right now
    overflows: int                      # times the queue was full (scans catch up later)
    # Why results are held and no new file is taken (the results log cannot be written); ""
    # while they flow. It clears itself once the held results are written.
    log_unwritable: str = ""


Event = Union[Result, StatusSnapshot]
Subscriber = Callable[[Event], None]


class Service:
    def __init__(self, config: Config, *, engine: Engine | None = None,
                 notify_send: Callable[[str, str], None] | None = None,
                 retry_max: float = 30.0, wrap_log_file: Callable | None = None,
                 gallery_link: str | None = None) -> None:
        """`engine` and `notify_send` replace the configured model and the desktop (for tests);
        `retry_max` caps the wait between tries to write a results log that could not be
        written; `wrap_log_file` wraps the ledger's AppendFile (tests inject disk faults);
        `gallery_link` is what a click on a burst's notification opens (the gallery server's
        address; default: the gallery page in the data folder)."""
        self.config = config
        self._retry_max = retry_max
        self._wrap_log_file = wrap_log_file
        self._engine = engine
        self._owns_engine = engine is None
        self._notify_send = notify_send
        self._gallery_link = gallery_link
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._state = STOPPED
        self._day = date.today()
        self._done_today = self._errors_today = 0
        self._last_result: Result | None = None
        self._last_error = ""
        self._ledger: Ledger | None = None
        self._lock_file: RunLock | None = None
        self._sinks: list[Sink] = []
        self._jobs: JobQueue | None = None
        self._worker: Worker | None = None
        self._watcher: Watcher | None = None
        self._learner: AutoLearner | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Open the log, load the model, start the worker, then the watcher (which catches up).

        Raises ConfigError/ModelError/LedgerError/SortError before any thread starts.
        """
        self._set_state(STARTING)
        try:
            self._start_parts()
        except BaseException:
            self._close_parts()
            self._set_state(STOPPED)
            raise
        self._set_state(WATCHING)

    def _start_parts(self) -> None:
        config = self.config
        set_max_megapixels(config.decode.max_megapixels)
        decoders.set_time_limit(config.decode.time_limit_seconds)
        self._lock_file = RunLock(config.log.path)
        self._lock_file.acquire()  # AlreadyRunning: another service has this log
        self._ledger = Ledger(config.log.path, wrap=self._wrap_log_file)
        readback = self._ledger.open()
        self._done_today = readback.today
        self._errors_today = readback.errors_today
        self._last_result = readback.recent[-1] if readback.recent else None
        decoders.start()  # they import Pillow while the model loads; idle a minute, they end
        if self._engine is None:
            # Serves the version `teddywatch learn` made, and the next one as soon as it is
            # made, between two batches (teach/engine.py).
            self._engine = with_learning(load_engine(
                config.model.path, config.model.engine, threads=config.model.threads,
                code=config.model.code))
        self._sinks = self._build_sinks(readback.recent)
        self._jobs = JobQueue(config.service.queue_size, done=readback.done)
        threshold = config.model.unsure_threshold
        self._worker = Worker(self._engine, self._jobs, self._sinks,
                              self._engine.default_threshold if threshold is None else threshold,
                              config.model.batch_size, on_result=self._on_result,
                              on_blocked=self._on_log_blocked,
                              on_unblocked=self._on_log_unblocked, retry_max=self._retry_max)
        self._worker.start()
        if config.learn.auto and isinstance(self._engine, LearnedEngine):
            self._learner = AutoLearner(config.model.path, self._engine.base.model_id,
                                        config.learn.after, on_learned=self._on_learned)
            self._learner.start()
        self._watcher = Watcher(config.watch, self._jobs,
                                settle_seconds=config.service.settle_seconds,
                                rescan_seconds=config.service.rescan_minutes * 60,
                                state_file=state_file(config.log.path),
                                on_change=self._publish_status)
        self._watcher.start()

    def _build_sinks(self, recent) -> list[Sink]:
        assert self._ledger is not None and self._engine is not None
        sinks: list[Sink] = []
        mover = None
        if self.config.sort.enabled:
            from teddywatch.sinks.sort import MoveSink, PlanSink, Sorter

            sorter = Sorter(self.config.sort, self._engine.labels, self.config.watch)
            sorter.recover(recent)
            sinks.append(PlanSink(sorter))
            mover = MoveSink(sorter, correct=self._ledger.append)
        sinks.append(self._ledger)
        if mover is not None:
            sinks.append(mover)
        if self.config.notify.enabled:
            from teddywatch.gallery import default_page
            from teddywatch.sinks.notify import NotifySink

            told = self._notify_send
            send = None if told is None else (lambda message: told(message.title, message.body))
            page = (self._gallery_link or default_page()) if self.config.gallery.enabled \
                else None
            sinks.append(NotifySink(self.config.notify, send=send, gallery_page=page))
        return sinks

    def stop(self, timeout: float = 10.0) -> None:
        """Stop in flow order: observers, then the worker (its batch finishes), then sinks."""
        if self._state in (STOPPED, STOPPING):
            return
        self._set_state(STOPPING)
        self._close_parts(timeout)
        self._set_state(STOPPED)

    def _close_parts(self, timeout: float = 10.0) -> None:
        if self._learner is not None:
            self._learner.stop()
            self._learner = None
        if self._watcher is not None:
            self._watcher.stop()
        if self._worker is not None and not self._worker.stop(timeout):
            log.warning("the worker did not finish its batch within %gs", timeout)
        for sink in reversed(self._sinks):
            try:
                sink.close()
            except Exception:
                log.exception("closing the %s sink failed", sink.name)
        if self._ledger is not None:
            self._ledger.close()
        if self._lock_file is not None:
            self._lock_file.release()
            self._lock_file = None
        if self._engine is not None and self._owns_engine:
            self._engine.close()
            self._engine = None
        decoders.stop()
        self._watcher = self._worker = None
        self._sinks = []

    def pause(self) -> None:
        """Stop classifying after the batch in hand; files keep being noticed (and caught up)."""
        if self._worker is not None and self._state == WATCHING:
            self._worker.pause()
            self._set_state(PAUSED)

    def resume(self) -> None:
        if self._worker is not None and self._state == PAUSED:
            self._worker.resume()
            self._set_state(WATCHING)
            if self._watcher is not None:
                self._watcher.request_scan()  # what overflowed while paused

    # --- reporting --------------------------------------------------------------------------

    def status(self) -> StatusSnapshot:
        watcher = self._watcher.status() if self._watcher is not None else None
        with self._lock:
            self._roll_day()
            return StatusSnapshot(
                state=self._state,
                queue_length=self._queue_length(),
                done_today=self._done_today, errors_today=self._errors_today,
                last_result=self._last_result,
                last_error=self._last_error or _missing_text(watcher),
                folders_watched=watcher.watching if watcher else 0,
                folders_missing=watcher.missing if watcher else (),
                overflows=watcher.overflows if watcher else 0,
                log_unwritable=self._worker.blocked if self._worker is not None else "")

    def _queue_length(self) -> int:
        waiting = len(self._jobs) if self._jobs is not None else 0
        return waiting + (self._worker.in_hand if self._worker is not None else 0)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` with each Result and each StatusSnapshot change; returns unsubscribe.

        Callbacks run on the service's threads (the worker's, for Results): keep them quick and
        hand anything slow to your own thread or UI loop.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    def _on_result(self, result: Result) -> None:
        with self._lock:
            self._roll_day()
            self._done_today += 1
            self._last_result = result
            if result.status == ERROR:
                self._errors_today += 1
                self._last_error = f"{os.path.basename(result.path)}: {result.detail}"
        log.info("%s %s %s%s", result.label, format_confidence(result.confidence), result.path,
                 f" ({result.detail})" if result.detail else "")
        self._publish(result)

    def _on_log_blocked(self, reason: str) -> None:
        """Worker thread: the results log cannot be written. One log line, one notification."""
        log.error("%s; holding the results, taking no new files and retrying until it can be "
                  "written", reason)
        self._tell("teddywatch: results paused", f"{reason}. Results are kept and written once "
                   "there is room again; new files wait.")
        self._publish_status()

    def _on_log_unblocked(self, count: int) -> None:
        log.info("the results log can be written again: wrote the %d held result%s",
                 count, "" if count == 1 else "s")
        self._publish_status()
        if self._watcher is not None:
            self._watcher.request_scan()  # files the full queue turned away meanwhile

    # --- teaching (the tray and the gallery server call these; teddywatch/teach/ does it) -----

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self._engine.labels) if self._engine is not None else ()

    @property
    def can_learn(self) -> bool:
        """True while the model in use can learn from corrections (a LearnedEngine)."""
        return isinstance(self._engine, LearnedEngine)

    @property
    def model_name(self) -> str:
        """The model and the learned version in use ('bears-int8.onnx@8a52900c+v2'), as the
        version history says now; "" before the model is loaded."""
        engine = self._engine
        if isinstance(engine, LearnedEngine):
            return learned_name(engine.base.model_id, engine.versions.current())
        return getattr(engine, "model_id", "") if engine is not None else ""

    def correct(self, path: str, label: str) -> Correction:
        """Record that `path` shows `label`; raises CorrectionError with a one-line reason."""
        correction = correct_file(path, label, log_path=self.config.log.path, labels=self.labels)
        if self._learner is not None:
            self._learner.nudge()
        return correction

    def undo_correction(self, path: str) -> Correction | None:
        return undo_correction(path, log_path=self.config.log.path)

    def undo_learning(self) -> str:
        """Go back to the model version used before; says which one is in use now."""
        engine = self._engine
        if not isinstance(engine, LearnedEngine):
            return "this model does not learn"
        step = engine.versions.undo()
        return (f"now classifying with {learned_name(engine.base.model_id, step[1])}"
                if step else "already using the shipped model")

    def _on_learned(self, report: LearnReport) -> None:
        self._tell("teddywatch learned from your corrections", report.lines()[-1])
        self._publish_status()

    def _tell(self, title: str, body: str) -> None:
        """A notification on its own short thread: a hanging D-Bus call must not stop the
        worker. Without a desktop the log line already said it."""
        send = self._notify_send
        if send is None:
            from teddywatch.sinks.notifier import default_notifier

            send = default_notifier().tell

        def run() -> None:
            try:
                send(title, body)
            except Exception as exc:
                log.info("no desktop notification (%s)", exc)

        threading.Thread(target=run, name="teddywatch-tell", daemon=True).start()

    def _roll_day(self) -> None:
        today = date.today()
        if today != self._day:
            self._day, self._done_today, self._errors_today = today, 0, 0

    def _set_state(self, state: str) -> None:
        with self._lock:
            self._state = state
        self._publish_status()

    def _publish_status(self) -> None:
        self._publish(self.status())

    def _publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("a status subscriber failed")


def _missing_text(watcher) -> str:
    if watcher is None or not watcher.missing:
        return ""
    return f"watch folder not available: {', '.join(watcher.missing)}"


def state_file(log_path: Path) -> Path:
    """When each folder was first watched (for skip_existing), kept beside the results log."""
    return log_path.with_name(log_path.stem + ".folders.json")
