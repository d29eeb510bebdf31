"""What `teddywatch classify` prints: one result per image (table, csv or json), a progress
counter on a terminal, and at the end the files that could not be classified.

Results go to stdout; the progress counter and the problems go to stderr, so a script reading the
csv or json output never sees them.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Callable, Sequence, TextIO

from teddywatch.csvcells import printable, spreadsheet_safe
from teddywatch.results import ERROR, Result, format_confidence

#: How many failed files the closing report names one by one.
MAX_LISTED = 20


def report_problems(results: Sequence[Result], total: int, out: TextIO) -> None:
    """One line per file that could not be classified (the first MAX_LISTED), after the rows."""
    failed = [r for r in results if r.status == ERROR]
    if not failed:
        return
    files = "file" if total == 1 else "files"
    out.write(f"error: {len(failed)} of {total} {files} could not be classified:\n")
    for result in failed[:MAX_LISTED]:
        out.write(f"  {printable(result.path)}: {printable(result.detail)}\n")
    if len(failed) > MAX_LISTED:
        out.write(f"  ... and {len(failed) - MAX_LISTED} more (the error rows above)\n")
    out.flush()


class Progress:
    """A one-line progress counter on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.enabled = sys.stderr.isatty() and total > 1

    def __enter__(self) -> "Progress":
        return self

    def advance(self, count: int) -> None:
        self.done += count
        if self.enabled:
            width = 30
            filled = width * self.done // self.total
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                             f"{self.done}/{self.total}")
            sys.stderr.flush()

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _top_text(result: Result, k: int) -> str:
    """The top-k column of the csv format: machine-readable, so full numbers, not percentages."""
    return " ".join(f"{label}:{p:.3f}" for label, p in result.top[:k])


def _top_shown(result: Result, k: int) -> str:
    """The table's top-k, for people: the same percentages as everywhere else."""
    return " ".join(f"{label}:{format_confidence(p)}" for label, p in result.top[:k])


def _table_writer(out: TextIO, top: int) -> Callable[[Result], None]:
    def write(result: Result) -> None:
        shown = f"{result.label} {format_confidence(result.confidence):>6}" \
            if result.status != "error" else "error"
        extra = f"  [{_top_shown(result, top)}]" if top > 1 and result.top else ""
        detail = f"  ({result.detail})" if result.detail else ""
        out.write(f"{shown:<18} {result.status:<7} {printable(result.path)}{extra}"
                  f"{printable(detail)}\n")
        out.flush()
    return write


CSV_COLUMNS = ("path", "label", "confidence", "status", "detail", "model", "seconds")


def _csv_writer(out: TextIO, top: int) -> Callable[[Result], None]:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS + (("top",) if top > 1 else ()))

    def write(result: Result) -> None:
        row = [result.path, result.label, f"{result.confidence:.4f}", result.status,
               result.detail, result.model, f"{result.seconds:.4f}"]
        if top > 1:
            row.append(_top_text(result, top))
        writer.writerow([spreadsheet_safe(cell) for cell in row])
        out.flush()
    return write


def _json_writer(out: TextIO, top: int) -> Callable[[Result], None]:
    def write(result: Result) -> None:
        record = {"path": result.path, "label": result.label,
                  "confidence": round(result.confidence, 4), "status": result.status,
                  "detail": result.detail, "model": result.model,
                  "seconds": round(result.seconds, 4),
                  "top": [{"label": label, "confidence": round(p, 4)}
                          for label, p in result.top[:top]]}
        # A name that is not UTF-8 goes out as JSON \udcff escapes (json.loads gives it back).
        text = json.dumps(record, ensure_ascii=False)
        if printable(text) != text:
            text = json.dumps(record)
        out.write(text + "\n")
        out.flush()
    return write


OUTPUT_FORMATS = {"table": _table_writer, "csv": _csv_writer, "json": _json_writer}
