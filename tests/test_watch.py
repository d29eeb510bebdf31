"""The watcher on real temp folders with real watchdog observers (no engine needed here).

Waits poll the JobQueue with a timeout; nothing asserts on timing.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest

from teddywatch.config import WatchConfig
from teddywatch.results import FileId
from teddywatch.watch import JobQueue, Watcher, wanted

FIXTURES = Path(__file__).resolve().parent / "fixtures"
JPEG = (FIXTURES / "teddy_1.jpg").read_bytes()
pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def _drain(jobs: JobQueue, count: int, timeout: float = 10.0) -> list[str]:
    """Paths of the next `count` jobs, or whatever arrived before the timeout."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += [job.path for job in jobs.take(count - len(got), 0.1)]
    return got


def _quiet(jobs: JobQueue, seconds: float = 0.7) -> list[str]:
    """Jobs arriving within `seconds` (used to show that something did NOT get queued)."""
    return [job.path for job in jobs.take(1000, seconds)] + \
        [job.path for job in jobs.take(1000, 0)]


@pytest.fixture
def watching(tmp_path: Path) -> Iterator:
    """Start a Watcher on the given configs; stop every one at the end."""
    started: list[Watcher] = []

    def start(*watches: WatchConfig, queue: JobQueue | None = None, **kw) -> tuple[Watcher, JobQueue]:
        jobs = queue if queue is not None else JobQueue(100)
        kw.setdefault("settle_seconds", 0.2)
        watcher = Watcher(watches, jobs, state_file=tmp_path / "folders.json", **kw)
        watcher.start()
        started.append(watcher)
        return watcher, jobs

    yield start
    for watcher in started:
        watcher.stop()


def test_names_that_are_wanted(tmp_path: Path) -> None:
    root = str(tmp_path)
    flat = WatchConfig(path=tmp_path, ignore=("skip*",))
    deep = WatchConfig(path=tmp_path, recursive=True)
    join = os.path.join
    assert wanted(join(root, "a.JPG"), root, flat)
    assert wanted(join(root, "=a, \"b\"\n.png"), root, flat)
    for name in ("a.jpg.part", "a.jpg.crdownload", "a.tmp", "a.jpg~", ".hidden.jpg", "a.txt",
                 "skip-me.jpg"):
        assert not wanted(join(root, name), root, flat), name
    assert not wanted(join(root, "sub", "a.jpg"), root, flat)
    assert wanted(join(root, "sub", "a.jpg"), root, deep)
    assert not wanted(join(root, ".thumbnails", "a.jpg"), root, deep)


def test_queue_is_bounded_and_gives_one_job_per_file() -> None:
    done = FileId("/p/done.jpg", 1, 1)
    jobs = JobQueue(2, done=[done])
    assert not jobs.offer(done)
    assert jobs.offer(FileId("/p/a.jpg", 1, 1))
    assert not jobs.offer(FileId("/p/a.jpg", 1, 1))
    assert jobs.offer(FileId("/p/a.jpg", 2, 2))  # edited: a new job
    assert not jobs.offer(FileId("/p/b.jpg", 1, 1)) and jobs.overflows == 1
    assert [j.path for j in jobs.take(10, 0)] == ["/p/a.jpg", "/p/a.jpg"]
    assert jobs.offer(FileId("/p/b.jpg", 1, 1))


def test_a_dropped_file_gives_one_job_after_it_is_closed(tmp_path: Path, watching) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _, jobs = watching(WatchConfig(path=inbox))
    target = inbox / "slow.jpg"
    with open(target, "wb") as f:  # create + modify... and still open
        f.write(JPEG[:100])
        f.flush()
        assert _quiet(jobs, 0.8) == []  # never read while being written
        f.write(JPEG[100:])
    assert _drain(jobs, 1) == [str(target)]
    os.utime(target)  # a touch changes mtime: the file counts as edited
    assert _drain(jobs, 1) == [str(target)]
    assert _quiet(jobs) == []


def test_partial_downloads_wait_for_the_rename(tmp_path: Path, watching) -> None:
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    _, jobs = watching(WatchConfig(path=inbox))
    for partial in ("photo.jpg.part", "photo.jpg.crdownload", ".photo.jpg.tmp", "photo.jpg~"):
        (inbox / partial).write_bytes(JPEG)
    assert _quiet(jobs) == []
    os.rename(inbox / "photo.jpg.part", inbox / "photo.jpg")
    (elsewhere / "moved.jpg").write_bytes(JPEG)
    os.rename(elsewhere / "moved.jpg", inbox / "moved.jpg")
    assert sorted(_drain(jobs, 2)) == [str(inbox / "moved.jpg"), str(inbox / "photo.jpg")]
    assert _quiet(jobs) == []


def test_catch_up_queues_unlogged_files_and_honours_skip_existing(tmp_path: Path,
                                                                   watching) -> None:
    inbox, old = tmp_path / "inbox", tmp_path / "old"
    (inbox / "deep").mkdir(parents=True)
    old.mkdir()
    for name in ("logged.jpg", "new.jpg", "deep/nested.png"):
        (inbox / name).write_bytes(JPEG)
    (old / "before.jpg").write_bytes(JPEG)
    # Make the files look old enough to be settled, as after a restart.
    for path in (inbox / "logged.jpg", inbox / "new.jpg", inbox / "deep/nested.png",
                 old / "before.jpg"):
        os.utime(path, (time.time() - 60, time.time() - 60))
    logged = FileId.of(inbox / "logged.jpg")
    jobs = JobQueue(100, done=[logged])
    watcher, _ = watching(WatchConfig(path=inbox, recursive=True),
                          WatchConfig(path=old, skip_existing=True), queue=jobs)
    assert sorted(_drain(jobs, 2)) == [str(inbox / "deep/nested.png"), str(inbox / "new.jpg")]
    (old / "after.jpg").write_bytes(JPEG)
    assert _drain(jobs, 1) == [str(old / "after.jpg")]
    watcher.request_scan()  # a rescan finds nothing new
    assert _quiet(jobs) == []


def test_missing_folder_is_retried_and_a_vanished_one_comes_back(tmp_path: Path,
                                                                  watching, caplog) -> None:
    later, flaky = tmp_path / "later", tmp_path / "flaky"
    flaky.mkdir()
    watcher, jobs = watching(WatchConfig(path=later), WatchConfig(path=flaky))
    assert watcher.status().missing == (str(later),)
    assert "not available" in caplog.text
    later.mkdir()
    (later / "a.jpg").write_bytes(JPEG)
    assert _drain(jobs, 1) == [str(later / "a.jpg")]

    shutil.rmtree(flaky)  # unplugged
    _wait_for(lambda: watcher.status().missing == (str(flaky),))
    flaky.mkdir()  # plugged in again, with a file that arrived meanwhile
    (flaky / "b.jpg").write_bytes(JPEG)
    assert _drain(jobs, 1) == [str(flaky / "b.jpg")]
    assert watcher.status().missing == ()


def test_polling_folder_survives_the_share_going_away(tmp_path: Path, watching) -> None:
    share = tmp_path / "share"
    share.mkdir()
    watcher, jobs = watching(WatchConfig(path=share, poll=True, poll_seconds=0.2))
    (share / "a.jpg").write_bytes(JPEG)
    assert _drain(jobs, 1) == [str(share / "a.jpg")]
    shutil.rmtree(share)
    _wait_for(lambda: watcher.status().missing == (str(share),))
    share.mkdir()
    (share / "b.jpg").write_bytes(JPEG)
    assert _drain(jobs, 1) == [str(share / "b.jpg")]


def test_overflow_is_recorded_and_picked_up_by_a_later_scan(tmp_path: Path, watching) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _, jobs = watching(WatchConfig(path=inbox), queue=JobQueue(5))
    names = [f"{n:03}.jpg" for n in range(30)]
    for name in names:
        (inbox / name).write_bytes(JPEG)
    got = _drain(jobs, 30, timeout=20)  # taking jobs frees room; the watcher rescans
    assert sorted(got) == [str(inbox / n) for n in names]
    assert jobs.overflows > 0


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_inotify_overflow_triggers_a_rescan(tmp_path: Path, watching,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher, jobs = watching(WatchConfig(path=inbox), rescan_seconds=0)
    assert _quiet(jobs, 0.3) == []  # the catch-up scan is done
    monkeypatch.setattr(watcher, "note", lambda *args: None)  # the kernel drops every event
    (inbox / "lost.jpg").write_bytes(JPEG)
    os.utime(inbox / "lost.jpg", (time.time() - 60, time.time() - 60))
    assert _quiet(jobs, 0.3) == []
    # What watchdog logs when inotify's queue overflowed:
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost")
    assert _drain(jobs, 1) == [str(inbox / "lost.jpg")]
