"""Jobs in, Results out: decode each file, ask the engine, apply the unsure threshold.

`classify_batch` is the whole per-batch step with no threads, used by `teddywatch classify` and by
the worker thread alike. One bad file never spoils the batch: it becomes an `error` Result.
`map_in_order` lets `teddywatch classify` keep two batches in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, TypeVar

from PIL import Image

from teddywatch.engines import Engine
from teddywatch.decoders import decode_all
from teddywatch.imaging import DecodeError
from teddywatch.results import Job, Result, status_for
from teddywatch.sinks import SinkUnavailable

if TYPE_CHECKING:  # only for the Worker's annotations; classify_batch needs neither
    from teddywatch.sinks import Sink
    from teddywatch.watch import JobQueue

log = logging.getLogger(__name__)


def classify_batch(engine: Engine, jobs: Sequence[Job], threshold: float) -> list[Result]:
    """One Result per job, in order; never raises for a bad file or a failing model call."""
    decoded: list[tuple[int, Image.Image, float]] = []
    results: list[Result | None] = [None] * len(jobs)
    # Files are decoded in the decoder processes (one per core, at most two), in order.
    outcomes = decode_all([job.path for job in jobs], engine.decode_size)
    for index, (job, (outcome, seconds)) in enumerate(zip(jobs, outcomes)):
        if isinstance(outcome, DecodeError):
            results[index] = _failed(engine, job, str(outcome), seconds)
        elif isinstance(outcome, BaseException):  # a decoder bug must not stop the batch
            log.error("unexpected error decoding %s", job.path, exc_info=outcome)
            results[index] = _failed(engine, job, f"cannot decode: {type(outcome).__name__}: "
                                     f"{outcome}", seconds)
        else:
            decoded.append((index, outcome, seconds))

    for index, result in _predict_all(engine, jobs, decoded, threshold):
        results[index] = result
    for _, image, _ in decoded:
        image.close()
    return [r for r in results if r is not None]


Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


def map_in_order(work: Callable[[Item], Outcome], items: Iterable[Item],
                 in_flight: int = 1) -> Iterator[Outcome]:
    """`work(item)` for each item, up to `in_flight` at once on their own threads, in order.

    With two batches in flight one is decoded while the other is in the model, and a slow photo
    at the end of a batch no longer leaves a core idle. At most `in_flight` batches are held.
    """
    if in_flight <= 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(in_flight, thread_name_prefix="teddywatch-batch") as pool:
        pending: deque[Future[Outcome]] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _predict_all(engine: Engine, jobs: Sequence[Job],
                 decoded: list[tuple[int, Image.Image, float]],
                 threshold: float) -> list[tuple[int, Result]]:
    if not decoded:
        return []
    started = time.perf_counter()
    try:
        predictions = engine.predict([image for _, image, _ in decoded])
    except Exception:
        if len(decoded) == 1:
            index, _, decode_seconds = decoded[0]
            log.exception("the model failed on %s", jobs[index].path)
            return [(index, _failed(engine, jobs[index], "the model failed on this image",
                                    decode_seconds))]
        # Retry one by one so a single image that breaks the model only fails itself.
        log.warning("the model failed on a batch of %d; retrying one by one", len(decoded))
        out: list[tuple[int, Result]] = []
        for item in decoded:
            out += _predict_all(engine, jobs, [item], threshold)
        return out
    share = (time.perf_counter() - started) / len(decoded)
    out = []
    for (index, _, decode_seconds), prediction in zip(decoded, predictions):
        job = jobs[index]
        out.append((index, Result(
            path=job.path, label=prediction.label, confidence=prediction.confidence,
            status=status_for(prediction.confidence, threshold),
            model=prediction.model or engine.model_id,
            seconds=decode_seconds + share, size=job.file.size, mtime_ns=job.file.mtime_ns,
            top=prediction.top)))
    return out


def _failed(engine: Engine, job: Job, detail: str, seconds: float) -> Result:
    return Result.failed(job.path, detail, model=engine.model_id, size=job.file.size,
                         mtime_ns=job.file.mtime_ns, seconds=seconds)


# --- the worker thread (used by the watch service) -------------------------------------------

class Worker:
    """One thread that owns the engine: takes Jobs in batches, classifies, feeds the sinks.

    Sinks see each Result in order; one failing sink (or one bad file) never stops the thread.
    With an engine that allows it (`concurrent_predict`), batches are halves of `batch_size` and
    a second one waiting in the queue is classified on a helper thread while the first finishes,
    as `teddywatch classify` does: a burst of photos keeps both cores busy within the same
    memory, and a single dropped file is not delayed. `stop()`
    lets the batches in hand finish, rows written, and leaves queued Jobs for the next start's
    catch-up. `on_result` is called with each final Result (the service's hook).

    When a sink raises SinkUnavailable (the results log on a full disk), the worker holds that
    Result and every one after it, in order, takes no new Jobs (they wait in the bounded queue),
    and hands the held ones over again, from that sink on, after 1, 2, 4 ... up to
    `retry_max` seconds. `on_blocked(reason)` is called once when it starts holding and
    `on_unblocked(count)` once it could hand them all over. Stopped while holding, it makes one
    last try, then logs how many it could not write: their files have no row, so the next
    start's catch-up classifies them again.
    """

    def __init__(self, engine: Engine, jobs: "JobQueue", sinks: Sequence["Sink"],
                 threshold: float, batch_size: int = 16,
                 on_result: Callable[[Result], None] = lambda result: None,
                 on_blocked: Callable[[str], None] = lambda reason: None,
                 on_unblocked: Callable[[int], None] = lambda count: None,
                 retry_first: float = 1.0, retry_max: float = 30.0) -> None:
        self.engine = engine
        self.jobs = jobs
        self.sinks = list(sinks)
        self.threshold = threshold
        self.on_result = on_result
        self.on_blocked = on_blocked
        self.on_unblocked = on_unblocked
        self.in_flight = 2 if getattr(engine, "concurrent_predict", False) else 1
        # Two half batches hold the same images (and model memory) as one whole batch.
        self.batch_size = max(1, batch_size // self.in_flight)
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="teddywatch-worker", daemon=True)
        self.in_hand = 0  # Jobs taken but not yet through the sinks (for status)
        # Results a sink could not take yet, each with the index of the sink to resume at.
        self._held: deque[tuple[Result, int]] = deque()
        self.blocked = ""  # why results are held; "" when they flow
        self._retry_first, self._retry_max = retry_first, retry_max
        self._retry_delay = retry_first
        self._next_retry = 0.0
        self._held_since_block = 0

    def start(self) -> None:
        self._thread.start()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish the batches in hand, then end; True if the thread ended within `timeout`."""
        self._stop.set()
        self._running.set()  # a paused worker must wake up to end
        self.jobs.close()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.5)
        return not self._thread.is_alive()

    def _run(self) -> None:
        pool = (ThreadPoolExecutor(self.in_flight, thread_name_prefix="teddywatch-batch")
                if self.in_flight > 1 else None)
        pending: deque[tuple[Sequence[Job], Future[list[Result]]]] = deque()
        try:
            while pending or self._held or not self._stop.is_set():
                if self._held:
                    self._while_held(pending)
                else:
                    batch = (self._take(waiting=bool(pending))
                             if len(pending) < self.in_flight else [])
                    if batch:
                        pending.append((batch, _start(pool, self._classify, batch)))
                    elif pending:  # the oldest batch's rows go out first, whatever finishes first
                        results = pending.popleft()[1].result()
                        self._refill(pool, pending)
                        self._deliver(results)
                    elif self.paused and not self._stop.is_set():
                        self._running.wait(0.5)
                self.in_hand = sum(len(jobs) for jobs, _ in pending) + len(self._held)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _refill(self, pool: ThreadPoolExecutor | None, pending: deque) -> None:
        """Start the next batch, if one is waiting, before the finished one's rows go out (each
        row is fsynced): the model keeps working meanwhile, with the same images in hand."""
        batch = self._take(waiting=True) if pool is not None else []
        if batch:
            pending.append((batch, _start(pool, self._classify, batch)))

    def _while_held(self, pending: deque) -> None:
        """Blocked: the batches in hand join the held results; retry on schedule, or at stop."""
        if pending:
            self._held.extend((result, 0) for result in pending.popleft()[1].result())
        elif self._stop.is_set():
            if not self._flush_held():
                self._abandon_held()
        elif time.monotonic() >= self._next_retry:
            self._flush_held()
        else:
            self._stop.wait(min(0.5, self._next_retry - time.monotonic()))

    def _take(self, waiting: bool) -> list[Job]:
        """The next batch, or none when stopping or paused; no waiting while a batch runs."""
        if self._stop.is_set() or self.paused:
            return []
        batch = self.jobs.take(self.batch_size, timeout=0 if waiting else 0.5)
        if batch and (self.paused or self._stop.is_set()):
            self.jobs.unget(batch)  # paused or stopped while we waited: leave them queued
            return []
        return batch

    def _classify(self, batch: Sequence[Job]) -> list[Result]:
        try:
            return classify_batch(self.engine, batch, self.threshold)
        except Exception as exc:  # classify_batch should not raise; if it does, log every file
            log.exception("classifying a batch of %d failed", len(batch))
            return [_failed(self.engine, job, f"internal error: {type(exc).__name__}: {exc}",
                            0.0) for job in batch]

    def _deliver(self, results: Sequence[Result]) -> None:
        self._held.extend((result, 0) for result in results)
        self._flush_held()

    def _flush_held(self) -> bool:
        """Hand the held results over in order; False (and still held) if a sink is unavailable."""
        written = 0
        while self._held:
            result, first = self._held[0]
            stuck = self._through_sinks(result, first)
            if stuck is not None:
                result, index, reason = stuck
                self._held[0] = (result, index)
                self._block(reason, written)
                return False
            self._held.popleft()
            written += 1
        if self.blocked:
            count = self._held_since_block + written
            self.blocked, self._held_since_block = "", 0
            self._retry_delay = self._retry_first
            try:
                self.on_unblocked(count)
            except Exception:
                log.exception("a status subscriber failed")
        return True

    def _block(self, reason: str, written: int) -> None:
        """Note the first failure of an episode once; schedule the next try with backoff."""
        if self.blocked:
            self._held_since_block += written  # written since the episode began
        if not self.blocked:
            self.blocked = reason
            self._retry_delay = self._retry_first
            try:
                self.on_blocked(reason)
            except Exception:
                log.exception("a status subscriber failed")
        else:
            self._retry_delay = min(self._retry_delay * 2, self._retry_max)
        self._next_retry = time.monotonic() + self._retry_delay

    def _abandon_held(self) -> None:
        log.warning("stopping with %d result%s not written (%s); those files have no row, so the "
                    "next start classifies them again", len(self._held),
                    "" if len(self._held) == 1 else "s", self.blocked)
        self._held.clear()

    def _through_sinks(self, result: Result,
                       first: int = 0) -> tuple[Result, int, str] | None:
        """Through the sinks from index `first`; (result so far, sink index, why) if one is
        unavailable, None when done."""
        for index in range(first, len(self.sinks)):
            sink = self.sinks[index]
            try:
                result = sink.handle(result)
            except SinkUnavailable as exc:
                return result, index, str(exc)
            except Exception:
                log.exception("the %s sink failed on %s", sink.name, result.path)
                if sink.required:
                    break
        try:
            self.on_result(result)
        except Exception:
            log.exception("a result subscriber failed")
        return None


def _start(pool: ThreadPoolExecutor | None, work: Callable[[Sequence[Job]], list[Result]],
           batch: Sequence[Job]) -> Future[list[Result]]:
    """`work(batch)` on the pool, or right here (and already done) when there is none."""
    if pool is not None:
        return pool.submit(work, batch)
    done: Future[list[Result]] = Future()
    done.set_result(work(batch))
    return done
