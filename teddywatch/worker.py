"""Jobs in, Results out: decode each file, ask the engine, apply the unsure threshold.

`classify_batch` is the whole per-batch step with no threads, used by `teddywatch classify` and by
the worker thread alike. One bad file never spoils the batch: it becomes an `error` Result.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

from PIL import Image

from teddywatch.engines import Engine
from teddywatch.imaging import DecodeError, decode
from teddywatch.results import Job, Result, status_for

log = logging.getLogger(__name__)


def classify_batch(engine: Engine, jobs: Sequence[Job], threshold: float) -> list[Result]:
    """One Result per job, in order; never raises for a bad file or a failing model call."""
    decoded: list[tuple[int, Image.Image, float]] = []
    results: list[Result | None] = [None] * len(jobs)
    for index, job in enumerate(jobs):
        started = time.perf_counter()
        try:
            image = decode(job.path, engine.decode_size)
        except DecodeError as exc:
            results[index] = _failed(engine, job, str(exc), time.perf_counter() - started)
            continue
        except Exception as exc:  # a decoder bug must not stop the batch
            log.exception("unexpected error decoding %s", job.path)
            results[index] = _failed(engine, job, f"cannot decode: {type(exc).__name__}: {exc}",
                                     time.perf_counter() - started)
            continue
        decoded.append((index, image, time.perf_counter() - started))

    for index, result in _predict_all(engine, jobs, decoded, threshold):
        results[index] = result
    for _, image, _ in decoded:
        image.close()
    return [r for r in results if r is not None]


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
            status=status_for(prediction.confidence, threshold), model=engine.model_id,
            seconds=decode_seconds + share, size=job.file.size, mtime_ns=job.file.mtime_ns,
            top=prediction.top)))
    return out


def _failed(engine: Engine, job: Job, detail: str, seconds: float) -> Result:
    return Result.failed(job.path, detail, model=engine.model_id, size=job.file.size,
                         mtime_ns=job.file.mtime_ns, seconds=seconds)
