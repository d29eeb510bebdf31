"""The CSV results log: the service's one record of what is done.

One row per classified file, appended, flushed and fsynced row by row, so a crash loses at most
the row being written. On open, a torn last row (a crash mid-write) is cut off, and the rows are
read back so catch-up knows which files (path + size + mtime) are already done.

Cells are made spreadsheet-safe (OWASP CSV injection) by `csvcells`; `read_results` undoes that,
so every path, however odd, round-trips exactly. Names that are not valid UTF-8 (possible on
Linux) are kept byte for byte with `surrogateescape`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterator

from teddywatch.csvcells import restore, spreadsheet_safe
from teddywatch.results import ERROR, FileId, Result

log = logging.getLogger(__name__)

COLUMNS = ("time", "path", "label", "confidence", "status", "detail", "model",
           "size", "mtime_ns", "moved_to")
ENCODING = "utf-8"
ERRORS = "surrogateescape"


class LedgerError(Exception):
    """The results log cannot be used; the message says which file and why."""


#: How many of the newest rows `ReadBack.recent` keeps (crash recovery looks only at these).
RECENT_ROWS = 512


@dataclass
class ReadBack:
    """What an existing log holds, as read on open; kept small however long the log is."""

    done: set[FileId] = field(default_factory=set)
    recent: deque[Result] = field(default_factory=lambda: deque(maxlen=RECENT_ROWS))
    rows: int = 0
    today: int = 0
    errors_today: int = 0
    repaired_bytes: int = 0
    skipped_rows: int = 0

    def add(self, result: Result) -> None:
        self.rows += 1
        self.done.add(result.file)
        self.recent.append(result)
        if result.time.date() == date.today():
            self.today += 1
            self.errors_today += result.status == ERROR


# --- writing --------------------------------------------------------------------------------

def to_row(result: Result) -> list[str]:
    values = [result.time.isoformat(timespec="seconds"), result.path, result.label,
              f"{result.confidence:.4f}", result.status, result.detail, result.model,
              str(result.size), str(result.mtime_ns), result.moved_to]
    return [spreadsheet_safe(v) for v in values]


class Ledger:
    """Owns the open results log. Only the worker thread appends; `open` runs before it starts.

    It is also the first sink: `handle` appends, and it is `required`, so a file whose row could
    not be written is neither sorted nor announced (the next start's catch-up retries it).
    """

    name = "results log"
    required = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None
        self._writer = None

    def open(self) -> ReadBack:
        """Create or repair the log, read back its rows, and get ready to append."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            readback = read_log(self.path, repair=True)
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self._file = open(self.path, "a", encoding=ENCODING, errors=ERRORS, newline="")
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot open the results log: {exc}") from None
        # The default "\r\n" terminator matters: csv quotes any cell holding \r or \n only
        # when they are part of the terminator, and a bare \r in a name must be quoted.
        self._writer = csv.writer(self._file)
        if fresh:
            self._write([*COLUMNS])
        return readback

    def append(self, result: Result) -> None:
        """Write one row and make it durable before returning."""
        if self._writer is None:
            raise LedgerError(f"{self.path}: the results log is not open")
        self._write(to_row(result))

    def handle(self, result: Result) -> Result:
        self.append(result)
        return result

    def _write(self, row: list[str]) -> None:
        assert self._file is not None and self._writer is not None
        self._writer.writerow(row)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None


# --- reading --------------------------------------------------------------------------------

def read_results(path: Path) -> Iterator[Result]:
    """Every complete row of the log at `path` as a Result, oldest first (none if no log)."""
    if not path.exists():
        return
    with open(path, "rb") as raw:
        header: list[str] | None = None
        for row, _, complete in _records(raw):
            if not complete:
                return
            if header is None:
                header = _check_header(path, row)
                continue
            result = _to_result(header, row)
            if result is not None:
                yield result


def read_log(path: Path, *, repair: bool) -> ReadBack:
    """Parse the log; with `repair`, cut a torn last row off the file."""
    readback = ReadBack()
    if not path.exists():
        return readback
    good_end = 0
    header: list[str] | None = None
    with open(path, "rb") as raw:
        for row, end, complete in _records(raw):
            if not complete:
                break
            good_end = end
            if header is None:
                header = _check_header(path, row)
                continue
            result = _to_result(header, row)
            if result is None:
                readback.skipped_rows += 1
                log.warning("%s: skipping a malformed row ending at byte %d", path, end)
            else:
                readback.add(result)
    size = path.stat().st_size
    if good_end < size:
        readback.repaired_bytes = size - good_end
        if repair:
            log.warning("%s: removing a torn last row (%d bytes) left by a crash",
                        path, readback.repaired_bytes)
            with open(path, "r+b") as raw:
                raw.truncate(good_end)
                os.fsync(raw.fileno())
    return readback


def _records(raw) -> Iterator[tuple[list[str], int, bool]]:
    """(cells, byte offset after the record, complete?) for each CSV record in a binary file.

    A record is complete only when its last line ends with a newline: a row cut off mid-write
    may still parse, with a shortened last cell. Offsets are in bytes so the file can be cut.
    """
    state = {"pos": 0, "ended": True}

    def lines() -> Iterator[str]:
        for line in raw:
            state["pos"] += len(line)
            state["ended"] = line.endswith(b"\n")
            yield line.decode(ENCODING, ERRORS)

    reader = csv.reader(lines(), strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:  # an unterminated quote at the end of the file
            yield [], state["pos"], False
            return
        yield row, state["pos"], state["ended"]


def _check_header(path: Path, row: list[str]) -> list[str]:
    missing = {"path", "size", "mtime_ns"} - set(row)
    if missing:
        raise LedgerError(
            f"{path}: not a teddywatch results log (its first row lacks "
            f"{', '.join(sorted(missing))}). Move it away or set [log] path to another file.")
    return row


def _to_result(header: list[str], row: list[str]) -> Result | None:
    if len(row) != len(header):
        return None
    cells = {name: restore(value) for name, value in zip(header, row)}
    try:
        return Result(
            path=cells["path"], label=cells.get("label", ""),
            confidence=float(cells.get("confidence") or 0.0),
            status=cells.get("status", ""), detail=cells.get("detail", ""),
            model=cells.get("model", ""), time=datetime.fromisoformat(cells["time"]),
            size=int(cells["size"]), mtime_ns=int(cells["mtime_ns"]),
            moved_to=cells.get("moved_to", ""))
    except (KeyError, ValueError):
        return None
