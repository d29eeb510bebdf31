"""What `teddywatch classify` prints: one result per image (table, csv or json) and at the end
the files that could not be classified.

Results go to stdout; the problems go to stderr (as does the progress bar, progress.py), so a
script reading the csv or json output never sees them. Each format is a writer: called with one
Result it prints its row; `start()` and `finish()` frame the rows (the table's header and summary
line; csv and json add nothing, so they stay one record per line).
"""

from __future__ import annotations

import abc

import csv
import json
from collections import Counter
from typing import Sequence, TextIO

from teddywatch.csvcells import printable, spreadsheet_safe
from teddywatch.results import ERROR, UNSURE, Result, format_confidence

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


def _top_text(result: Result, k: int) -> str:
    """The top-k column of the csv format: machine-readable, so full numbers, not percentages."""
    return " ".join(f"{label}:{p:.3f}" for label, p in result.top[:k])


def _top_shown(result: Result, k: int) -> str:
    """The table's top-k, for people: the same percentages as everywhere else."""
    return " ".join(f"{label}:{format_confidence(p)}" for label, p in result.top[:k])


class _Writer(abc.ABC):
    """One output format: `writer(result)` prints its row; start() and finish() frame them."""

    def __init__(self, out: TextIO, top: int) -> None:
        self.out, self.top = out, top

    def start(self) -> None:
        """Before the first row."""

    @abc.abstractmethod
    def __call__(self, result: Result) -> None:
        """Print one result's row."""

    def finish(self) -> None:
        """After the last row."""


LABEL_WIDTH = 7  # "grizzly"; longer labels of a user's model push their row's columns along
TABLE_HEADER = f"{'label':<{LABEL_WIDTH}} {'confidence':>10} {'status':<7} file"


def summary_line(labels: Counter[str], unsure: int, errors: int) -> str:
    """The table's last line, e.g. `26 images: 10 black, 9 grizzly, 5 teddy, 2 errors`: the sure
    labels by count, then the unsure and the errors (each counted there, not under a label)."""
    total = sum(labels.values()) + unsure + errors
    parts = [f"{n} {printable(label)}"
             for label, n in sorted(labels.items(), key=lambda item: (-item[1], item[0]))]
    if unsure:
        parts.append(f"{unsure} unsure")
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    head = f"{total} image{'s' if total != 1 else ''}"
    return f"{head}: {', '.join(parts)}" if parts else head


class _TableWriter(_Writer):
    """For people: a header, one aligned row per image, a summary line."""

    def __init__(self, out: TextIO, top: int) -> None:
        super().__init__(out, top)
        self.labels: Counter[str] = Counter()
        self.unsure = self.errors = 0

    def start(self) -> None:
        extra = f"  [top {self.top}]" if self.top > 1 else ""
        self.out.write(f"{TABLE_HEADER}{extra}\n")
        self.out.flush()

    def __call__(self, result: Result) -> None:
        if result.status == ERROR:
            self.errors += 1
        elif result.status == UNSURE:
            self.unsure += 1
        else:
            self.labels[result.label] += 1
        shown = f"{result.label:<{LABEL_WIDTH}} {format_confidence(result.confidence):>10}" \
            if result.status != ERROR else "error"
        extra = f"  [{_top_shown(result, self.top)}]" if self.top > 1 and result.top else ""
        detail = f"  ({result.detail})" if result.detail else ""
        self.out.write(f"{shown:<18} {result.status:<7} {printable(result.path)}{extra}"
                       f"{printable(detail)}\n")
        self.out.flush()

    def finish(self) -> None:
        self.out.write(summary_line(self.labels, self.unsure, self.errors) + "\n")
        self.out.flush()


CSV_COLUMNS = ("path", "label", "confidence", "status", "detail", "model", "seconds")


class _CsvWriter(_Writer):
    """For scripts: a header row (written at once: it is part of the format), one row each."""

    def __init__(self, out: TextIO, top: int) -> None:
        super().__init__(out, top)
        self.writer = csv.writer(out)
        self.writer.writerow(CSV_COLUMNS + (("top",) if top > 1 else ()))

    def __call__(self, result: Result) -> None:
        row = [result.path, result.label, f"{result.confidence:.4f}", result.status,
               result.detail, result.model, f"{result.seconds:.4f}"]
        if self.top > 1:
            row.append(_top_text(result, self.top))
        self.writer.writerow([spreadsheet_safe(cell) for cell in row])
        self.out.flush()


class _JsonWriter(_Writer):
    """For scripts: JSON Lines, one object per image and nothing else."""

    def __call__(self, result: Result) -> None:
        top = self.top
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
        self.out.write(text + "\n")
        self.out.flush()


OUTPUT_FORMATS: dict[str, type[_Writer]] = {"table": _TableWriter, "csv": _CsvWriter,
                                             "json": _JsonWriter}
