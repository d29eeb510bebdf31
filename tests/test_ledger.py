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
