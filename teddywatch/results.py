"""The records every part shares: a Job going in, a Prediction from an engine, a Result going out.

Data flows one way: the watcher makes Jobs, the worker turns them into Results (asking an engine
for Predictions), and the sinks consume Results. Nothing here imports any other teddywatch module.
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

OK = "ok"
UNSURE = "unsure"
ERROR = "error"
STATUSES = (OK, UNSURE, ERROR)
# A row the user added by saying a result was wrong (`teddywatch correct`); not a classification.
CORRECTED = "corrected"

# The label reported for a file that could not be classified at all.
ERROR_LABEL = "error"


@dataclass(frozen=True)
class FileId:
    """A file as the ledger knows it: an edited or replaced file has a new size or mtime."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> "FileId":
        """The file `path` names (links followed); a dangling or looping link is itself the file,
        so it gets a row saying what is wrong with it."""
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ELOOP) or not os.path.islink(path):
                raise
            st = os.lstat(path)
        return cls(str(Path(path).absolute()), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Job:
    """One file to classify. `queued_at` is a time.monotonic() stamp for latency figures."""

    file: FileId
    queued_at: float = 0.0

    @property
    def path(self) -> str:
        return self.file.path


@dataclass(frozen=True)
class Prediction:
    """What an engine says about one decoded image: labels with probabilities, best first."""

    label: str
    confidence: float
    top: tuple[tuple[str, float], ...] = ()
    # The model that answered, when it differs from the engine's model_id of the moment (a
    # learned version switched in between two batches: teddywatch/teach/engine.py).
    model: str = ""


@dataclass(frozen=True)
class Result:
    """The outcome for one file, as logged, notified, sorted and shown in the tray."""

    path: str
    label: str
    confidence: float
    status: str
    detail: str = ""
    model: str = ""
    seconds: float = 0.0
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc).astimezone())
    size: int = -1
    mtime_ns: int = -1
    top: tuple[tuple[str, float], ...] = ()
    # Where the file is now, when a sink moved or copied it; empty when it stayed put.
    moved_to: str = ""

    @property
    def file(self) -> FileId:
        return FileId(self.path, self.size, self.mtime_ns)

    def with_destination(self, moved_to: str) -> "Result":
        return replace(self, moved_to=moved_to)

    @classmethod
    def failed(cls, path: str, detail: str, *, model: str = "", size: int = -1,
               mtime_ns: int = -1, seconds: float = 0.0) -> "Result":
        """An `error` result: one line saying why the file could not be classified."""
        one_line = " ".join(str(detail).split())
        return cls(path=path, label=ERROR_LABEL, confidence=0.0, status=ERROR, detail=one_line,
                   model=model, size=size, mtime_ns=mtime_ns, seconds=seconds)


def status_for(confidence: float, threshold: float) -> str:
    """`unsure` when the top confidence is under the threshold; the label is reported either way."""
    return OK if confidence >= threshold else UNSURE


#: What a confidence that is not a number at all (NaN, infinity) is shown as.
UNKNOWN_CONFIDENCE = "?%"


def format_confidence(p: float) -> str:
    """How a confidence is shown to a person, everywhere (CLI table, notifications, tray,
    gallery, log): a percentage with one decimal, truncated, never rounded up.

    Rounding would claim more than the model said ("100%" for 0.997), so the tenths are floored:
    0.997 -> "99.7%", 0.9996 -> "99.9%", and "100.0%" only for exactly 1.0. The floor is taken on
    the float's shortest repr (the digits Python prints and the results log stores), not on its
    binary value, so 0.29 is "29.0%", not "28.9%". A value that is not a probability never
    crashes a sink: NaN and infinities are "?%", and anything outside [0, 1] is clamped to it.
    Machine-readable outputs (the results log, classify --format csv/json) keep their own
    4-decimal numbers; this is only for people.
    """
    value = float(p)
    if not math.isfinite(value):
        return UNKNOWN_CONFIDENCE
    value = min(max(value, 0.0), 1.0)
    tenths = int((Decimal(repr(value)) * 1000).to_integral_value(rounding=ROUND_FLOOR))
    return f"{tenths // 10}.{tenths % 10}%"
