"""`teddywatch classify` through the real CLI: every output format, folders, errors, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from conftest import FIXTURES, REPO, answer_is_right, expected_label, make_special_files, run_cli
from teddywatch.csvcells import restore
from teddywatch.output import CSV_COLUMNS, summary_line
from teddywatch.worker import map_in_order

FIXTURE_FILES = sorted(FIXTURES.glob("*.jpg"))


def test_csv_format_on_a_folder(user_env: dict[str, str]) -> None:
    proc = run_cli("classify", str(FIXTURES), "--format", "csv", env=user_env)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {"path", "label", "confidence", "status", "detail"} <= set(rows[0])
    assert [Path(r["path"]).name for r in rows] == [p.name for p in FIXTURE_FILES]
    for row in rows:
        assert answer_is_right(row["path"], row["label"], row["status"]), row
        assert 0 < float(row["confidence"]) <= 1


def test_json_lines_with_top_k(user_env: dict[str, str]) -> None:
    proc = run_cli("classify", str(FIXTURE_FILES[0]), "--format", "json", "--top", "3",
                   env=user_env)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    record = json.loads(line)
    assert record["label"] == expected_label(FIXTURE_FILES[0])
    assert len(record["top"]) == 3
    assert record["top"][0]["label"] == record["label"]
    assert record["top"][0]["confidence"] >= record["top"][1]["confidence"]


def test_table_for_people(user_env: dict[str, str]) -> None:
    proc = run_cli("classify", *map(str, FIXTURE_FILES[:2]), env=user_env)
    assert proc.returncode == 0, proc.stderr
    header, *lines, summary = proc.stdout.splitlines()
    assert header.split() == ["label", "confidence", "status", "file"]
    assert len(lines) == 2
    assert lines[0].startswith(expected_label(FIXTURE_FILES[0]))
    assert re.fullmatch(r"\d{1,3}\.\d%", lines[0].split()[1]), lines[0]
    assert FIXTURE_FILES[0].name in lines[0]
    assert summary.startswith("2 images: ")


def test_table_summary_counts_labels_unsure_and_errors(tmp_path: Path,
                                                       user_env: dict[str, str]) -> None:
    for path in FIXTURE_FILES:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "zz_broken.png").write_bytes(b"not a png")
    # A high threshold makes some answers unsure: they are counted as unsure, not by label.
    proc = run_cli("classify", str(tmp_path), "--threshold", "0.995", env=user_env)
    assert proc.returncode == 1, proc.stderr
    header, *rows, summary = proc.stdout.splitlines()
    assert header.startswith("label") and len(rows) == len(FIXTURE_FILES) + 2
    sure = Counter(row.split()[0] for row in rows if row.split()[2] == "ok")
    unsure = sum(row.split()[2] == "unsure" for row in rows)
    assert unsure and sum(row.split()[1] == "error" for row in rows) == 2
    parts = [f"{n} {label}" for label, n in sorted(sure.items(), key=lambda i: (-i[1], i[0]))]
    assert summary == f"{len(rows)} images: {', '.join(parts)}, {unsure} unsure, 2 errors"


def test_summary_line_wording() -> None:
    assert summary_line(Counter(black=10, grizzly=9, teddy=5), 0, 2) == \
        "26 images: 10 black, 9 grizzly, 5 teddy, 2 errors"
    assert summary_line(Counter(teddy=1), 0, 0) == "1 image: 1 teddy"
    assert summary_line(Counter(), 1, 1) == "2 images: 1 unsure, 1 error"


def test_csv_and_json_have_no_header_changes_and_no_summary(user_env: dict[str, str]) -> None:
    csv_out = run_cli("classify", *map(str, FIXTURE_FILES[:2]), "--format", "csv", env=user_env)
    assert csv_out.stdout.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert len(csv_out.stdout.splitlines()) == 3 and csv_out.stderr == ""
    json_out = run_cli("classify", *map(str, FIXTURE_FILES[:2]), "--format", "json", env=user_env)
    assert [json.loads(line)["path"] for line in json_out.stdout.splitlines()] == \
        list(map(str, FIXTURE_FILES[:2]))
    assert json_out.stderr == ""


def test_a_folder_without_images_says_so_in_one_line_and_exits_0(
        tmp_path: Path, user_env: dict[str, str]) -> None:
    empty, others = tmp_path / "empty", tmp_path / "others"
    (empty / "sub").mkdir(parents=True)
    others.mkdir()
    (others / "notes.txt").write_text("no picture here")
    for fmt, stdout in (("table", ""), ("csv", ",".join(CSV_COLUMNS) + "\n"), ("json", "")):
        proc = run_cli("classify", str(empty), str(others), "--format", fmt, env=user_env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.splitlines() == [f"no images found in {empty}",
                                            f"no images found in {others}"]
        assert proc.stdout == stdout
    # Beside a file: the file is classified, the empty folder is still named.
    proc = run_cli("classify", str(empty), str(FIXTURE_FILES[0]), env=user_env)
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [f"no images found in {empty}"]
    assert proc.stdout.splitlines()[-1].startswith("1 image: ")


def test_fastai_engine_with_an_onnx_model_names_the_learner(
        tmp_path: Path, user_env: dict[str, str]) -> None:
    proc = run_cli("classify", str(FIXTURE_FILES[0]), "--engine", "fastai", env=user_env)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "bears-int8.onnx" in line and "needs the fast.ai learner (.pkl)" in line
    assert f"use --model {REPO / 'models' / 'bears.pkl'}" in line, line
    # A model of the user's without its learner beside it: said so, nothing unpickled.
    (tmp_path / "mine.onnx").write_bytes(b"onnx")
    proc = run_cli("classify", str(FIXTURE_FILES[0]), "--engine", "fastai",
                   "--model", str(tmp_path / "mine.onnx"), env=user_env)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "no learner was found beside it (mine.pkl)" in line and "Traceback" not in line


def test_bad_files_are_error_rows_and_exit_1(tmp_path: Path, user_env: dict[str, str]) -> None:
    shutil.copy(FIXTURE_FILES[0], tmp_path / "=good,one.jpg")
    (tmp_path / "empty.jpg").touch()
    (tmp_path / "notes.png").write_text("not a picture")
    proc = run_cli("classify", str(tmp_path), "--format", "csv", env=user_env)
    assert proc.returncode == 1, proc.stderr  # some file could not be classified
    assert "error: 2 of 3 files could not be classified" in proc.stderr
    rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(proc.stdout))}
    assert rows["empty.jpg"]["status"] == "error" and "empty" in rows["empty.jpg"]["detail"]
    assert rows["notes.png"]["status"] == "error"
    # The formula-looking name is escaped for spreadsheets but still names the file.
    escaped = [name for name in rows if name.endswith("=good,one.jpg")]
    assert escaped and rows[escaped[0]]["label"] == expected_label(FIXTURE_FILES[0])


def test_two_batches_in_flight_keep_the_order(tmp_path: Path, user_env: dict[str, str]) -> None:
    # Enough files for two batches at once (onnx engine, automatic threads), a bad one among
    # them; the same rows in the same order as one batch at a time (--threads 2).
    for copy in range(3):
        for path in FIXTURE_FILES:
            shutil.copy(path, tmp_path / f"{copy}_{path.name}")
    (tmp_path / "1_broken.jpg").write_bytes(b"not a jpeg")
    common = ("classify", str(tmp_path), "--format", "csv", "--batch-size", "4", "-v")
    overlapped = run_cli(*common, env=user_env)
    one_by_one = run_cli(*common, "--threads", "2", env=user_env)
    assert overlapped.returncode == one_by_one.returncode == 1, overlapped.stderr  # the bad one
    assert "2 batch(es) in flight" in overlapped.stderr
    assert "1 batch(es) in flight" in one_by_one.stderr
    rows = list(csv.DictReader(io.StringIO(overlapped.stdout)))
    reference = list(csv.DictReader(io.StringIO(one_by_one.stdout)))
    assert len(rows) == 3 * len(FIXTURE_FILES) + 1
    assert [(r["path"], r["label"], r["status"]) for r in rows] == \
        [(r["path"], r["label"], r["status"]) for r in reference]
    for row in rows:
        if row["status"] != "error":
            name = Path(row["path"]).name.split("_", 1)[1]
            assert answer_is_right(name, row["label"], row["status"]), row


def test_map_in_order_keeps_order_and_bounds_the_work_in_flight() -> None:
    running, most = [0], [0]
    lock = threading.Lock()

    def work(delay: float) -> float:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(delay)  # later items finish first
        with lock:
            running[0] -= 1
        return delay

    delays = [0.05, 0.01, 0.04, 0.0, 0.03, 0.02]
    assert list(map_in_order(work, delays, in_flight=2)) == delays
    assert most[0] == 2
    assert list(map_in_order(work, delays, in_flight=1)) == delays


def test_a_missing_path_is_an_error_row_and_the_others_are_classified(
        user_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    proc = run_cli("classify", str(missing), str(FIXTURE_FILES[0]), "--format", "csv",
                   env=user_env)
    assert proc.returncode == 1
    first, second = csv.DictReader(io.StringIO(proc.stdout))
    assert (first["path"], first["status"], first["detail"]) == \
        (str(missing), "error", "no such file or folder")
    assert second["label"] == expected_label(FIXTURE_FILES[0])
    assert proc.stderr.splitlines()[-2:] == [
        "error: 1 of 2 files could not be classified:", f"  {missing}: no such file or folder"]
    assert "Traceback" not in proc.stderr


def test_help_documents_the_exit_codes(user_env: dict[str, str]) -> None:
    proc = run_cli("classify", "--help", env=user_env)
    assert proc.returncode == 0
    codes = proc.stdout.split("exit codes:")[1]
    assert [line.split()[0] for line in codes.strip().splitlines()] == ["0", "1", "2", "130"]


def test_special_files_never_block_and_each_get_one_error_row(
        tmp_path: Path, user_env: dict[str, str]) -> None:
    shutil.copy(FIXTURE_FILES[0], tmp_path / "good.jpg")
    special = make_special_files(tmp_path)
    # The folder, and a FIFO and a dangling link named on their own: blocking would time out.
    proc = run_cli("classify", str(tmp_path), str(tmp_path / "fifo.jpg"),
                   str(tmp_path / "dangling.jpg"), "--format", "csv", env=user_env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    names = [Path(r["path"]).name for r in rows]
    assert sorted(names) == sorted([*special, "good.jpg", "fifo.jpg", "dangling.jpg"])
    for row in rows:
        name = Path(row["path"]).name
        if name == "good.jpg":
            assert row["label"] == expected_label(FIXTURE_FILES[0]), row
            continue
        assert row["status"] == "error" and special[name] in row["detail"], row
        assert "\n" not in row["detail"]
    assert f"error: {len(special) + 2} of {len(rows)} files could not be classified" in \
        proc.stderr
    assert "Traceback" not in proc.stderr


def test_model_that_cannot_load_exits_2(user_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_cli("classify", str(FIXTURE_FILES[0]), "--model", str(tmp_path / "m.onnx"),
                   env=user_env)
    assert proc.returncode == 2
    assert "model file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_a_name_that_is_not_utf8_in_every_format(tmp_path: Path, user_env: dict[str, str]) -> None:
    bad = os.fsencode(tmp_path) + b"/bad\xff\xfename.jpg"
    with open(bad, "wb") as out:
        out.write(FIXTURE_FILES[0].read_bytes())
    name = os.fsdecode(bad)
    for fmt in ("table", "csv", "json"):
        proc = subprocess.run([sys.executable, "-m", "teddywatch", "classify", str(tmp_path),
                               "--format", fmt], capture_output=True, env=user_env, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout.decode("utf-8")  # strict: valid UTF-8 whatever the names
        assert b"Traceback" not in proc.stderr
        if fmt == "table":
            row = text.splitlines()[1]  # after the header
            assert "bad\\xff\\xfename.jpg" in row and row.startswith(expected_label(FIXTURE_FILES[0]))
        elif fmt == "csv":
            (row,) = csv.DictReader(io.StringIO(text))
            assert restore(row["path"]) == name  # the same escaping as the results log
        else:
            assert json.loads(text)["path"] == name
