"""Saying a result was wrong: the one function the CLI, the tray and the gallery server call.

    correct_file(path, label, log_path=..., labels=...) -> Correction
    undo_correction(path, log_path=...) -> Correction | None

A correction is kept twice: as a labelled example in the CorrectionStore (what `learn` fits) and
as a `corrected` row in the results log (the log stays append-only; the row says what the model
had said). The row is one O_APPEND write, so it cannot tear a row the service writes meanwhile.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from teddywatch.appendlog import AppendFile
from teddywatch.ledger import COLUMNS, encode_row, read_results, to_row
from teddywatch.results import CORRECTED, FileId, Result, format_confidence
from teddywatch.teach.corrections import Correction, CorrectionError, CorrectionStore

USER_MODEL = "user"  # the `model` column of a correction row: the user said so


def last_result(log_path: Path, path: str) -> Result | None:
    """The newest classification row of `path` (or of a file sorted to `path`) in the log."""
    found = None
    for result in read_results(log_path):
        if path in (result.path, result.moved_to):
            found = result
    return found


def correct_file(path: str, label: str, *, log_path: Path, labels: Sequence[str],
                 store: CorrectionStore | None = None) -> Correction:
    """Record that `path` shows `label`; raises CorrectionError (one line) for a bad request."""
    if label not in labels:
        raise CorrectionError(f"'{label}' is not one of this model's labels: "
                              f"{', '.join(labels)}")
    store = store or CorrectionStore()
    previous = last_result(log_path, path)
    original = previous.path if previous else path
    where = previous.moved_to if previous and previous.moved_to else path
    if not os.path.exists(where) and os.path.exists(original):
        where = original
    was = previous.label if previous else ""
    was_confidence = previous.confidence if previous else math.nan
    correction = store.add(original, label, source=where, was=was, was_confidence=was_confidence)
    said = f"was {was} {format_confidence(was_confidence)}" if previous else "not classified before"
    _append_row(log_path, Result(path=original, label=label, confidence=1.0, status=CORRECTED,
                                 detail=said, model=USER_MODEL, **_identity(where, previous),
                                 moved_to=previous.moved_to if previous else ""))
    return correction


def undo_correction(path: str, *, log_path: Path,
                    store: CorrectionStore | None = None) -> Correction | None:
    store = store or CorrectionStore()
    previous = last_result(log_path, path)
    original = previous.path if previous else path
    withdrawn = store.undo(original)
    if withdrawn is not None:
        _append_row(log_path, Result(path=original, label=withdrawn.was or withdrawn.label,
                                     confidence=1.0, status=CORRECTED,
                                     detail=f"correction to {withdrawn.label} undone",
                                     model=USER_MODEL, **_identity(original, previous)))
    return withdrawn


def _identity(path: str, previous: Result | None) -> dict:
    if previous is not None:
        return {"size": previous.size, "mtime_ns": previous.mtime_ns}
    file = FileId.of(path)
    return {"size": file.size, "mtime_ns": file.mtime_ns}


def _append_row(log_path: Path, result: Result) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    file = AppendFile(log_path, header=encode_row([*COLUMNS]))
    try:
        file.append(encode_row(to_row(result)))
    except OSError as exc:
        raise CorrectionError(f"{log_path}: cannot write the correction to the results log: "
                              f"{exc.strerror or exc}") from None
    finally:
        file.close()


__all__ = ["Correction", "CorrectionError", "correct_file", "last_result", "undo_correction"]
