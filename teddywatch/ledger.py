"""The CSV results log: the service's one record of what is done.

One row per classified file, appended and fsynced row by row (`appendlog`), so a crash loses at
most the row being written, and a full or read-only disk leaves no part of a row behind. On open, a torn last row (a crash mid-write) is cut off, and the rows are
read back so catch-up knows which files (path + size + mtime) are already done.

Cells are made spreadsheet-safe (OWASP CSV injection) and always valid UTF-8 by `csvcells`: a
name that is not valid UTF-8 (possible on Linux) is written escaped (`'%/pics/bad%FF.jpg`).
`read_results` undoes both, so every path, however odd, round-trips exactly and a file is never
classified twice. The log is read line by line: a line that is no row (a disk error, an older
version's raw bytes) is reported once on open, left in the file and skipped.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Callable, Iterator

from teddywatch.appendlog import AppendFile
from teddywatch.csvcells import restore, spreadsheet_safe
from teddywatch.results import CORRECTED, ERROR, FileId, Result
from teddywatch.sinks import SinkUnavailable

log = logging.getLogger(__name__)

COLUMNS = ("time", "path", "label", "confidence", "status", "detail", "model",
           "size", "mtime_ns", "moved_to")
ENCODING = "utf-8"


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
    bad_lines: list["BadLine"] = field(default_factory=list)

    def add(self, result: Result) -> None:
        if result.status == CORRECTED:  # the user's word on an earlier row: not a classification
            return
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


class LogUnwritable(LedgerError, SinkUnavailable):
    """A row cannot be written right now (disk full, read-only, drive gone); nothing of it is in
    the file, and the same row may be appended again later. The message is one line."""


def encode_row(row: list[str]) -> bytes:
    # The default "\r\n" terminator matters: csv quotes any cell holding \r or \n only
    # when they are part of the terminator, and a bare \r in a name must be quoted.
    text = io.StringIO()
    csv.writer(text).writerow(row)
    return text.getvalue().encode(ENCODING)  # csvcells made every cell valid UTF-8


class Ledger:
    """Owns the open results log. Only the worker thread appends; `open` runs before it starts.

    It is also the first sink: `handle` appends, and it is `required`, so a file whose row could
    not be written is neither sorted nor announced. When the disk is full, read-only or gone,
    `append` raises LogUnwritable (a SinkUnavailable) with none of the row in the file: the
    worker holds the result and tries again. `wrap` wraps the AppendFile (tests inject faults).
    """

    name = "results log"
    required = True

    def __init__(self, path: Path, wrap: Callable[[AppendFile], AppendFile] | None = None) -> None:
        self.path = path
        self._wrap = wrap
        self._file: AppendFile | None = None

    def open(self) -> ReadBack:
        """Create or repair the log, read back its rows, and get ready to append."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            readback = read_log(self.path, repair=True)
            file = AppendFile(self.path, header=encode_row([*COLUMNS]))
            file.open()
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot open the results log: {exc}") from None
        self._file = self._wrap(file) if self._wrap is not None else file
        return readback

    def append(self, result: Result) -> None:
        """Write one row and make it durable before returning, or raise LogUnwritable."""
        if self._file is None:
            raise LedgerError(f"{self.path}: the results log is not open")
        try:
            self._file.append(encode_row(to_row(result)))
        except OSError as exc:
            raise LogUnwritable(f"cannot write the results log {self.path}: "
                                f"{exc.strerror or exc}") from exc

    def handle(self, result: Result) -> Result:
        self.append(result)
        return result

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None


# --- reading --------------------------------------------------------------------------------

#: A record longer than this (bytes or lines) is no row teddywatch wrote: its first line is bad.
MAX_RECORD_BYTES = 64 * 1024
MAX_RECORD_LINES = 256


@dataclass(frozen=True)
class BadLine:
    """A line of the log that is no readable row; it stays in the file as it is."""

    number: int  # 1-based physical line number
    offset: int  # byte offset of its start
    reason: str
    counted: bool = False  # read as a row all the same (only its bytes are odd)


def read_results(path: Path, *, corrections: bool = False) -> Iterator[Result]:
    """Every readable row of the log at `path` as a Result, oldest first (none if no log).

    Rows of the user's corrections (status `corrected`) only with `corrections=True`. Bad lines
    and a torn last row are skipped silently here; `Ledger.open` reports them.
    """
    if not path.exists():
        return
    with open(path, "rb") as raw:
        for item in _parse(path, raw):
            if isinstance(item, Result) and (corrections or item.status != CORRECTED):
                yield item


def read_log(path: Path, *, repair: bool) -> ReadBack:
    """Parse the log line by line; with `repair`, cut a torn last row off the file.

    A bad line (bytes a disk error left, a row an older version wrote, a stray quote) is
    reported once here, left in the file, and skipped; every other row still counts.
    """
    readback = ReadBack()
    if not path.exists():
        return readback
    torn_at: int | None = None
    with open(path, "rb") as raw:
        for item in _parse(path, raw):
            if isinstance(item, Result):
                readback.add(item)
            elif isinstance(item, BadLine):
                readback.bad_lines.append(item)
            else:
                torn_at = item
    for bad in readback.bad_lines[:MAX_REPORTED]:
        log.warning("%s line %d: %s; the line is kept as it is%s", path, bad.number,
                    bad.reason, " and still counts" if bad.counted else " and skipped")
    if len(readback.bad_lines) > MAX_REPORTED:
        log.warning("%s: %d more odd lines kept as they are", path,
                    len(readback.bad_lines) - MAX_REPORTED)
    readback.skipped_rows = sum(not bad.counted for bad in readback.bad_lines)
    if torn_at is not None:
        readback.repaired_bytes = path.stat().st_size - torn_at
        if repair:
            log.warning("%s: removing a torn last row (%d bytes) left by a crash",
                        path, readback.repaired_bytes)
            with open(path, "r+b") as raw:
                raw.truncate(torn_at)
                os.fsync(raw.fileno())
    return readback


#: How many bad lines are reported one by one on open (the rest in one line).
MAX_REPORTED = 10


@dataclass
class _Line:
    number: int
    offset: int
    data: bytes

    @property
    def ended(self) -> bool:
        return self.data.endswith(b"\n")


def _parse(path: Path, raw) -> Iterator[Result | BadLine | int]:
    """Results and BadLines in file order, then the byte offset of a torn tail (if any).

    Records are CSV (a quoted cell may hold newlines), but the log is read line by line: a
    record that does not parse into a row makes only its first line bad, and reading goes on
    at the next line. A record cut off at the end of the file (no final newline: a crash
    mid-write) is torn, and so are bad lines right before it with no good row after them.
    """
    lines = _lines(raw)
    ahead: deque[_Line] = deque()
    header: list[str] | None = None
    tentative: list[BadLine] = []  # bad lines that may yet turn out to be a torn tail

    def fill(count: int) -> bool:
        while len(ahead) < count:
            line = next(lines, None)
            if line is None:
                return False
            ahead.append(line)
        return True

    while fill(1):
        first = ahead[0]
        outcome, used = _record(ahead, fill)
        if outcome is _TORN:
            yield (tentative[0].offset if tentative else first.offset)
            return
        if isinstance(outcome, list):
            if header is None:
                header = _check_header(path, outcome)
                for _ in range(used):
                    ahead.popleft()
                continue
            result = _to_result(header, outcome)
            if result is not None:
                yield from tentative
                tentative.clear()
                raw_bytes = [ahead.popleft() for _ in range(used)]
                if not _is_utf8(raw_bytes):
                    yield BadLine(first.number, first.offset, "a name that is not valid UTF-8, "
                                  "written unescaped by an older teddywatch", counted=True)
                yield result
                continue
            reason = _why_not_a_row(header, outcome)
        else:
            reason = outcome
        ahead.popleft()
        if not _is_utf8([first]):
            reason = "not valid UTF-8"
        bad = BadLine(first.number, first.offset, reason)
        if outcome is _UNCLOSED and not _ends_with_newline(ahead, first):
            tentative.append(bad)  # perhaps the start of a torn last row
        else:
            yield from tentative
            tentative.clear()
            yield bad
    if tentative:  # the file ends inside a quote: the last row was cut off
        yield tentative[0].offset


_TORN = "torn"
_UNCLOSED = "a quote that is never closed"


def _ends_with_newline(ahead: deque[_Line], first: _Line) -> bool:
    """Does the file end with a newline? (`ahead` holds every line up to the end by now.)"""
    return (ahead[-1] if ahead else first).ended


def _record(ahead: deque[_Line], fill) -> tuple[list[str] | str, int]:
    """Parse one record from the lines ahead: (cells, lines used), or (reason, 0) if bad,
    or (_TORN, n) for a complete-looking record that the end of the file cut off."""
    used, size = 1, len(ahead[0].data)
    while True:
        text = [_text(line.data) for line in list(ahead)[:used]]
        reader = csv.reader(text, strict=True)
        try:
            cells = next(reader)
        except StopIteration:
            return "an empty line", 0
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                return f"not a CSV row ({exc})", 0
            if used >= MAX_RECORD_LINES or size > MAX_RECORD_BYTES or not fill(used + 1):
                return _UNCLOSED, 0
            used += 1
            size += len(ahead[used - 1].data)
            continue
        if not ahead[used - 1].ended:
            return _TORN, used
        return cells, used


def _is_utf8(lines: list[_Line]) -> bool:
    try:
        for line in lines:
            line.data.decode(ENCODING)
    except UnicodeDecodeError:
        return False
    return True


def _text(data: bytes) -> str:
    return data.decode(ENCODING, "surrogateescape")


def _lines(raw) -> Iterator[_Line]:
    offset = 0
    for number, data in enumerate(raw, 1):
        yield _Line(number, offset, data)
        offset += len(data)


def _check_header(path: Path, row: list[str]) -> list[str]:
    missing = {"path", "size", "mtime_ns"} - set(row)
    if missing:
        raise LedgerError(
            f"{path}: not a teddywatch results log (its first row lacks "
            f"{', '.join(sorted(missing))}). Move it away or set [log] path to another file.")
    return row


def _why_not_a_row(header: list[str], row: list[str]) -> str:
    if not row:
        return "an empty line"
    if len(row) != len(header):
        return f"{len(row)} cells where a row has {len(header)}"
    return "a cell that is not what its column holds (time, size or number)"


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
