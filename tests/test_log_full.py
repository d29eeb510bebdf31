"""A results log that cannot be written stops the intake, not the results (issue 14, item 6).

Real parts: the default model, a real watchdog observer on a real temp folder, and for the full
disk a real tmpfs (mounted here when the test may; skipped, saying so, when it may not). A
read-only remount cannot be made while the log is open for writing (the kernel refuses with
EBUSY), so that case wraps the ledger's own file object and raises EROFS at its write. A
removed drive is the real log file and folder with the system calls of `appendlog` failing with
EIO (as a pulled-out drive's do) while the folder is moved away, then back.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from gui_tools import wait_for
from teddywatch.appendlog import AppendFile
from teddywatch.ledger import COLUMNS, encode_row, read_results, to_row
from teddywatch.results import Result
from teddywatch.service import WATCHING, Service
from test_service import FIXTURES, assert_well_formed, config_for, engine, tiny_jpeg  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_leaked_threads")

PAGE = 4096


def paths_logged(log_path: Path) -> Counter:
    return Counter(r.path for r in read_results(log_path))


def drop_files(inbox: Path, count: int, start: int = 0) -> list[str]:
    inbox.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(start, start + count):
        target = inbox / f"photo_{i:03d}.jpg"
        tiny_jpeg(target, seed=i)
        names.append(str(target))
    return names


def log_almost_one_page(log_path: Path, room: int) -> None:
    """A log whose size ends `room` bytes before a page boundary: on a full tmpfs the next row
    is written in part (what fits in the page), then fails: the torn bytes must go again."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    header = encode_row([*COLUMNS])
    filler = Result(path="/gone/earlier.jpg", label="other", confidence=0.5, status="ok",
                    size=1, mtime_ns=1)
    base = len(header) + len(encode_row(to_row(filler)))
    padded = replace(filler, detail="x" * (PAGE - room - base))
    data = header + encode_row(to_row(padded))
    assert len(data) == PAGE - room
    log_path.write_bytes(data)


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A 64 KB tmpfs, unmounted at the end; skipped when this user may not mount one."""
    point = tmp_path / "logdisk"
    point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (the EROFS test injects the fault instead)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; return it (delete it to free the space)."""
    filler = disk / "filler.bin"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * PAGE)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


class Told:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def __call__(self, title: str, body: str) -> None:
        self.messages.append((title, body))


def error_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_full_disk_holds_every_result_and_writes_each_once_when_space_returns(
        tmp_path: Path, tmpfs: Path, engine, user_env, caplog) -> None:
    caplog.set_level(logging.INFO)
    config = config_for(tmp_path)
    config = replace(config, log=replace(config.log, path=tmpfs / "results.csv"))
    log_path = config.log.path
    log_almost_one_page(log_path, room=40)
    told = Told()
    service = Service(config, engine=engine, notify_send=told, retry_max=1.0)
    service.start()
    try:
        filler = fill(tmpfs)
        names = drop_files(tmp_path / "inbox", 6)
        wait_for(lambda: service.status().log_unwritable, timeout=60, what="the blocked state")
        # Every file noticed and held (or waiting): none written, none dropped.
        wait_for(lambda: service.status().queue_length == len(names), timeout=60,
                 what="all six files held or queued")
        status = service.status()
        assert "No space left on device" in status.log_unwritable
        assert status.state == WATCHING
        assert not any(p in names for p in paths_logged(log_path))
        # The torn part of the row that did not fit was cut off again.
        assert log_path.stat().st_size == PAGE - 40

        filler.unlink()
        wait_for(lambda: len([p for p in paths_logged(log_path) if p in names]) == len(names),
                 timeout=60, what="every held result in the log")
        wait_for(lambda: not service.status().log_unwritable, timeout=10, what="the error cleared")
        # It carries on: a file dropped now is classified too.
        later = drop_files(tmp_path / "inbox", 1, start=50)
        wait_for(lambda: later[0] in paths_logged(log_path), timeout=60, what="the next file")
    finally:
        service.stop()

    counts = paths_logged(log_path)
    assert [counts[name] for name in names + later] == [1] * 7
    assert_well_formed(log_path)
    wait_for(lambda: told.messages, timeout=10, what="the notification")
    assert len(told.messages) == 1 and "No space left on device" in told.messages[0][1]
    blocked = [r for r in error_records(caplog) if "cannot write the results log" in r.message]
    assert len(blocked) == 1
    assert [r for r in caplog.records if r.exc_info] == [], "a traceback was logged"

    # A restart's catch-up finds every held file's row and classifies none again.
    restarted = Service(config, engine=engine, notify_send=told)
    restarted.start()
    try:
        sentinel = drop_files(tmp_path / "inbox", 1, start=90)
        wait_for(lambda: sentinel[0] in paths_logged(log_path), timeout=60, what="the sentinel")
    finally:
        restarted.stop()
    assert max(paths_logged(log_path).values()) == 1


class ReadOnlyLater:
    """The ledger's AppendFile, with its write failing as after a read-only remount while
    `read_only` is set (nothing reaches the file, as on a real one)."""

    def __init__(self, inner: AppendFile) -> None:
        self.inner = inner
        self.read_only = False
        self.refused = 0

    def append(self, data: bytes) -> None:
        if self.read_only:
            self.refused += 1
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.inner.path))
        self.inner.append(data)

    def close(self) -> None:
        self.inner.close()


def test_read_only_log_stopped_while_held_says_how_many_and_the_next_start_redoes_them(
        tmp_path: Path, engine, user_env, caplog) -> None:
    caplog.set_level(logging.INFO)
    config = config_for(tmp_path)
    log_path = config.log.path
    files: list[ReadOnlyLater] = []

    def wrap(inner: AppendFile) -> ReadOnlyLater:
        files.append(ReadOnlyLater(inner))
        return files[-1]

    told = Told()
    service = Service(config, engine=engine, notify_send=told, retry_max=0.5, wrap_log_file=wrap)
    service.start()
    first = drop_files(tmp_path / "inbox", 2)
    wait_for(lambda: set(first) <= set(paths_logged(log_path)), timeout=60, what="two rows")
    files[0].read_only = True
    held = drop_files(tmp_path / "inbox", 3, start=10)
    wait_for(lambda: service.status().queue_length == 3, timeout=60, what="three files held")
    wait_for(lambda: files[0].refused >= 3, timeout=30, what="retries with backoff")
    assert "Read-only file system" in service.status().log_unwritable
    service.stop()
    assert not set(held) & set(paths_logged(log_path))
    # The held ones are counted in one line (any not yet taken simply wait in the queue).
    stopped = [r.message for r in caplog.records if "not written" in r.message]
    assert len(stopped) == 1
    count = re.search(r"stopping with (\d+) results? not written", stopped[0])
    assert count and 1 <= int(count.group(1)) <= 3, stopped[0]
    assert len(told.messages) == 1 and "Read-only file system" in told.messages[0][1]

    # Writable again: the next start classifies the three (they have no row), each once.
    again = Service(config, engine=engine, notify_send=told)
    again.start()
    try:
        wait_for(lambda: set(held) <= set(paths_logged(log_path)), timeout=60,
                 what="the held files classified at the next start")
    finally:
        again.stop()
    counts = paths_logged(log_path)
    assert [counts[p] for p in first + held] == [1] * 5
    assert_well_formed(log_path)
    assert [r for r in caplog.records if r.exc_info] == [], "a traceback was logged"


class PulledOut:
    """`os` as teddywatch.appendlog sees it, with every write, fsync and truncate failing with
    EIO while `gone` is set, as on a drive pulled out while the log is open (the test takes the
    log's folder away too, as the unmounted drive takes its mount point's contents)."""

    def __init__(self) -> None:
        self.gone = False
        self.refused = 0
        self.reopened = 0  # tries to open the log again while the drive was gone

    def __getattr__(self, name: str):
        return getattr(os, name)

    def open(self, path, flags: int, *mode) -> int:
        self.reopened += self.gone
        return os.open(path, flags, *mode)

    def _check(self) -> None:
        if self.gone:
            self.refused += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    def write(self, fd: int, data) -> int:
        self._check()
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        self._check()
        os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._check()
        os.ftruncate(fd, size)


def test_a_removed_drive_holds_the_results_and_writes_each_once_when_it_is_back(
        tmp_path: Path, engine, user_env, caplog, monkeypatch: pytest.MonkeyPatch) -> None:
    from teddywatch import appendlog

    caplog.set_level(logging.INFO)
    drive = PulledOut()
    monkeypatch.setattr(appendlog, "os", drive)
    config = config_for(tmp_path)
    log_path = config.log.path
    told = Told()
    service = Service(config, engine=engine, notify_send=told, retry_max=0.5)
    service.start()
    try:
        first = drop_files(tmp_path / "inbox", 2)
        wait_for(lambda: set(first) <= set(paths_logged(log_path)), timeout=60, what="two rows")
        drive.gone = True  # pulled out: the open log fails, and its folder is gone
        os.rename(log_path.parent, tmp_path / "elsewhere")
        held = drop_files(tmp_path / "inbox", 3, start=10)
        wait_for(lambda: service.status().log_unwritable, timeout=60, what="the blocked state")
        wait_for(lambda: service.status().queue_length == 3, timeout=60, what="three held")
        wait_for(lambda: drive.refused >= 1, timeout=30, what="a refused write")
        # the retries reopen the log by its path: its folder is not there, nor made again
        wait_for(lambda: drive.reopened, timeout=30, what="a retry that reopens the log")
        assert service.status().state == WATCHING and not log_path.parent.exists()
        os.rename(tmp_path / "elsewhere", log_path.parent)  # plugged back in
        drive.gone = False
        wait_for(lambda: set(held) <= set(paths_logged(log_path)), timeout=60,
                 what="the held results in the log")
        wait_for(lambda: not service.status().log_unwritable, timeout=10, what="the error cleared")
    finally:
        service.stop()
    counts = paths_logged(log_path)
    assert [counts[p] for p in first + held] == [1] * 5
    assert_well_formed(log_path)
    assert len(told.messages) == 1
    assert [r for r in caplog.records if r.exc_info] == [], "a traceback was logged"
