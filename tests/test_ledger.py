"""The results log: durable rows, torn-row repair, OWASP-safe cells that still round-trip."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from teddywatch.ledger import COLUMNS, Ledger, LedgerError, read_log, read_results
from teddywatch.results import ERROR, OK, FileId, Result

ODD_NAMES = [
    "=cmd|' /C calc'!A0.jpg", "+1.jpg", "-2.jpg", "@sum.jpg", "\tab.jpg", "\rcr.jpg",
    "'quoted.jpg", "a,b.jpg", 'say "cheese".jpg', "line\nbreak.jpg", "crlf\r\nname.jpg",
    "ünïcødé 熊 🐻.jpg", "bad-\udcff-byte.jpg",
]


def _result(path: str, **kw) -> Result:
    values = dict(path=path, label="teddy", confidence=0.97, status=OK, model="bears.onnx@x",
                  size=123, mtime_ns=456)
    values.update(kw)
    return Result(**values)


def test_rows_round_trip_and_no_cell_starts_with_a_formula(tmp_path: Path) -> None:
    log_path = tmp_path / "results.csv"
    ledger = Ledger(log_path)
    ledger.open()
    written = [_result(f"/pics/{name}") for name in ODD_NAMES]
    written.append(_result("-relative=.jpg", detail="=HYPERLINK(x)", status=ERROR,
                           label="error", moved_to="@dest"))
    for result in written:
        ledger.append(result)
    ledger.close()

    read = list(read_results(log_path))
    assert [r.path for r in read] == [r.path for r in written]
    assert read[-1].detail == "=HYPERLINK(x)" and read[-1].moved_to == "@dest"
    assert {r.file for r in read} == {FileId(r.path, 123, 456) for r in written}

    with open(log_path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(COLUMNS)
    assert all(len(row) == len(COLUMNS) for row in rows)
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_header_written_once_across_reopens(tmp_path: Path) -> None:
    log_path = tmp_path / "sub" / "results.csv"
    for n in range(3):
        ledger = Ledger(log_path)
        readback = ledger.open()
        assert readback.rows == n
        ledger.append(_result(f"/p/{n}.jpg"))
        ledger.close()
    text = log_path.read_text(encoding="utf-8")
    assert text.count("time,path") == 1
    assert read_log(log_path, repair=False).done == {FileId(f"/p/{n}.jpg", 123, 456)
                                                     for n in range(3)}


@pytest.mark.parametrize("tail", [
    b"2024-01-01T00:00:00+00:00,/p/torn.jpg,teddy,0.9",           # cut mid-row
    b'2024-01-01T00:00:00+00:00,"/p/new\nline',                   # cut inside a quoted cell
    b"2024-01-01T00:00:00+00:00,/p/x.jpg,teddy,0.9000,ok,,m,12,4",  # every column, last cut
])
def test_torn_last_row_is_repaired_on_open(tmp_path: Path, tail: bytes) -> None:
    log_path = tmp_path / "results.csv"
    ledger = Ledger(log_path)
    ledger.open()
    ledger.append(_result("/p/good.jpg"))
    ledger.close()
    good = log_path.read_bytes()
    log_path.write_bytes(good + tail)

    ledger = Ledger(log_path)
    readback = ledger.open()
    assert readback.repaired_bytes == len(tail)
    assert log_path.read_bytes() == good
    ledger.append(_result("/p/after.jpg"))
    ledger.close()
    assert [r.path for r in read_results(log_path)] == ["/p/good.jpg", "/p/after.jpg"]


def test_a_foreign_csv_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    log_path = tmp_path / "results.csv"
    log_path.write_text("name,score\na,1\n", encoding="utf-8")
    with pytest.raises(LedgerError, match="not a teddywatch results log"):
        Ledger(log_path).open()


# --- always valid UTF-8; bad lines are reported once, kept, and skipped ----------------------

NOT_UTF8 = "/pics/bad\udcff\udcfename.jpg"  # os.fsdecode(b"/pics/bad\xff\xfename.jpg")


def test_a_name_that_is_not_utf8_is_escaped_and_read_back_as_the_same_file(
        tmp_path: Path) -> None:
    log_path = tmp_path / "results.csv"
    ledger = Ledger(log_path)
    ledger.open()
    for path in (NOT_UTF8, "/pics/100%\udcff.jpg", "/pics/'%odd.jpg", "/pics/%FF.jpg"):
        ledger.append(_result(path))
    ledger.close()
    text = log_path.read_bytes().decode("utf-8")  # strict: the whole log is valid UTF-8
    assert "'%/pics/bad%FF%FEname.jpg" in text
    assert [r.path for r in read_results(log_path)] == [
        NOT_UTF8, "/pics/100%\udcff.jpg", "/pics/'%odd.jpg", "/pics/%FF.jpg"]
    readback = Ledger(log_path).open()
    assert FileId(NOT_UTF8, 123, 456) in readback.done
    assert readback.bad_lines == []


def _good_rows(n: int, start: int = 0) -> bytes:
    return b"".join(
        f"2024-01-01T00:00:00+00:00,/p/{i}.jpg,teddy,0.9000,ok,,m,1,2,\r\n".encode()
        for i in range(start, start + n))


@pytest.mark.parametrize("bad, reason", [
    (b"\x00" * 300 + b"\r\n", "cells where a row has"),           # a zeroed block
    (b"2024-01-01T00:00:00+00:00,/p/\xff\xfe.jpg,teddy\r\n", "not valid UTF-8"),
    (b'2024-01-01,"/p/stray quote.jpg\r\n', "quote that is never closed"),
    (b'2024-01-01,"/p/x.jpg"junk,teddy\r\n', "not a CSV row"),
    (b"\r\n", "an empty line"),
    (b"yesterday,/p/t.jpg,teddy,0.9,ok,,m,1,2,\r\n", "not what its column holds"),
])
def test_a_bad_line_is_reported_once_kept_and_every_other_row_counts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: bytes, reason: str) -> None:
    log_path = tmp_path / "results.csv"
    header = (",".join(COLUMNS) + "\r\n").encode()
    before = header + _good_rows(3) + bad + _good_rows(3, start=3)
    log_path.write_bytes(before)

    with caplog.at_level("WARNING", logger="teddywatch.ledger"):
        ledger = Ledger(log_path)
        readback = ledger.open()
    assert readback.rows == 6 and readback.skipped_rows == 1
    assert {f.path for f in readback.done} == {f"/p/{i}.jpg" for i in range(6)}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "line 5" in warnings[0] and reason in warnings[0], warnings[0]
    assert log_path.read_bytes() == before  # kept as it was
    ledger.append(_result("/p/after.jpg"))
    ledger.close()
    assert log_path.read_bytes().startswith(before)
    assert [r.path for r in read_results(log_path)] == [f"/p/{i}.jpg" for i in range(6)] + \
        ["/p/after.jpg"]


def test_an_old_unescaped_name_still_counts_and_is_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log_path = tmp_path / "results.csv"
    header = (",".join(COLUMNS) + "\r\n").encode()
    old_row = b"2024-01-01T00:00:00+00:00,/pics/bad\xff\xfename.jpg,teddy,0.9,ok,,m,123,456,\r\n"
    log_path.write_bytes(header + old_row + _good_rows(1))
    with caplog.at_level("WARNING", logger="teddywatch.ledger"):
        readback = Ledger(log_path).open()
    assert FileId(NOT_UTF8, 123, 456) in readback.done  # the same file: not classified again
    assert readback.rows == 2 and readback.skipped_rows == 0
    (message,) = [r.getMessage() for r in caplog.records]
    assert "line 2" in message and "not valid UTF-8" in message and "still counts" in message


def test_a_stray_quote_before_a_torn_last_row_cuts_only_the_torn_row(tmp_path: Path) -> None:
    log_path = tmp_path / "results.csv"
    header = (",".join(COLUMNS) + "\r\n").encode()
    kept = header + _good_rows(2) + b'x,"stray\r\n' + _good_rows(1, start=2)
    log_path.write_bytes(kept + b'2024-01-01T00:00:00+00:00,"/p/torn')
    readback = Ledger(log_path).open()
    assert readback.rows == 3 and readback.skipped_rows == 1
    assert readback.repaired_bytes == len(b'2024-01-01T00:00:00+00:00,"/p/torn')
    assert log_path.read_bytes() == kept
