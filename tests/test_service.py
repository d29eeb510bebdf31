"""The watch service end to end: real default model, real temp folders, real watchdog observers.

Some tests run `teddywatch run --headless` in a subprocess (signals, kill -9, memory); the rest
drive the `Service` object in-process with the real engine loaded once. Every wait polls the
results log with a timeout; nothing asserts on timing.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from teddywatch import resources
from teddywatch.config import (Config, LogConfig, ModelConfig, NotifyConfig, ServiceConfig,
                               SortConfig, WatchConfig)
from teddywatch.ledger import COLUMNS, Ledger, read_results
from teddywatch.results import ERROR, OK, UNSURE, FileId, Result
from teddywatch.service import PAUSED, WATCHING, Service, StatusSnapshot
from teddywatch.sinks.notify import BurstSummary, NotifySink
from teddywatch.sinks.sort import SortError
from teddywatch.watch import JobQueue
from teddywatch.worker import Worker

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODEL = resources.default_model_path()
GOOD = {"teddy_1.jpg": "teddy", "grizzly_1.jpg": "grizzly", "black_1.jpg": "black",
        "other_cat.jpg": "other"}

log = logging.getLogger(__name__)
pytestmark = pytest.mark.usefixtures("no_leaked_threads")


# --- helpers --------------------------------------------------------------------------------

def rows(log_path: Path) -> list[Result]:
    return list(read_results(log_path))


def wait_rows(log_path: Path, count: int, timeout: float = 60.0,
              proc: subprocess.Popen | None = None) -> list[Result]:
    """The log's rows once it holds at least `count`; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = rows(log_path)
        if len(got) >= count:
            return got
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the service exited early with {proc.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(got)} of {count} rows after {timeout}s")
        time.sleep(0.05)


def assert_well_formed(log_path: Path) -> None:
    """Valid UTF-8, no ragged rows, and every file (path+size+mtime) in the log exactly once."""
    with open(log_path, encoding="utf-8", newline="") as f:  # strict: odd names are escaped
        table = list(csv.reader(f))
    assert table[0] == list(COLUMNS)
    assert all(len(row) == len(COLUMNS) for row in table), "ragged row"
    counts = Counter(r.file for r in rows(log_path))
    assert [f for f, n in counts.items() if n > 1] == []


def tiny_jpeg(path: Path, seed: int) -> None:
    """A 32x32 JPEG (a few hundred bytes): decoding costs next to nothing."""
    rng = random.Random(seed)
    Image.new("RGB", (32, 32), tuple(rng.randrange(256) for _ in range(3))).save(path, "JPEG")


def drop(source: Path, target: Path) -> None:
    """Write a file the way a browser or camera import does: write, close, done."""
    target.write_bytes(source.read_bytes())


def config_for(tmp: Path, **kw) -> Config:
    watches = kw.pop("watch", None) or (WatchConfig(path=tmp / "inbox"),)
    return Config(
        watch=watches,
        model=kw.pop("model", ModelConfig(path=MODEL, batch_size=8)),
        log=LogConfig(path=tmp / "data" / "results.csv"),
        notify=kw.pop("notify", NotifyConfig(enabled=False)),
        sort=kw.pop("sort", SortConfig(enabled=False)),
        service=kw.pop("service", ServiceConfig(settle_seconds=0.3, rescan_minutes=5)),
    )


def write_toml(tmp: Path, *, batch_size: int = 8, queue_size: int = 1000,
               sort: Path | None = None) -> Path:
    """A config file for the subprocess tests (paths quoted as TOML literal strings)."""
    lines = ["[[watch]]", f"path = '{tmp / 'inbox'}'", "",
             "[model]", f"path = '{MODEL}'", f"batch_size = {batch_size}", "",
             "[log]", f"path = '{tmp / 'data' / 'results.csv'}'", "",
             "[notify]", "enabled = false", "",
             "[service]", f"queue_size = {queue_size}", "settle_seconds = 0.3", ""]
    if sort is not None:
        lines += ["[sort]", "enabled = true", f"destination = '{sort}'", ""]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Headless:
    """`teddywatch run --headless` in a subprocess; stderr is collected on a thread."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "teddywatch", "run", "--headless", "--config", str(config)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith("watching ") for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"service not ready (exit {self.proc.poll()}):\n{self.stderr}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def engine():
    """The real default model, loaded once for the in-process tests."""
    assert MODEL.exists(), f"the default model is missing: {MODEL}"
    from teddywatch.engines import load_engine

    loaded = load_engine(MODEL)
    yield loaded
    loaded.close()


@pytest.fixture
def services(user_env) -> Iterator:
    """Start in-process Services; stop each at the end even if the test failed."""
    started: list[Service] = []

    def start(config: Config, engine, **kw) -> Service:
        service = Service(config, engine=engine, **kw)
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def headless(user_env) -> Iterator:
    running: list[Headless] = []

    def start(config: Path) -> Headless:
        service = Headless(config, user_env)
        running.append(service)
        service.wait_ready()
        return service

    yield start
    for service in running:
        service.kill()


# --- the subprocess: drop, rename into place, shutdown ---------------------------------------

def test_drop_rename_and_move_into_place_then_sigint_exits_0(tmp_path: Path, headless) -> None:
    inbox, downloads = tmp_path / "inbox", tmp_path / "downloads"
    inbox.mkdir()
    downloads.mkdir()
    service = headless(write_toml(tmp_path))
    log_path = tmp_path / "data" / "results.csv"

    drop(FIXTURES / "teddy_1.jpg", inbox / "teddy.jpg")
    drop(FIXTURES / "grizzly_1.jpg", inbox / "grizzly.jpg.part")  # a browser download...
    assert [r.path for r in wait_rows(log_path, 1)] == [str(inbox / "teddy.jpg")]
    os.rename(inbox / "grizzly.jpg.part", inbox / "grizzly.jpg")  # ...renamed into place
    drop(FIXTURES / "black_1.jpg", downloads / "black.jpg")
    os.rename(downloads / "black.jpg", inbox / "black.jpg")  # moved in from elsewhere

    got = {Path(r.path).name: r for r in wait_rows(log_path, 3)}
    assert {name: r.label for name, r in got.items()} == {
        "teddy.jpg": "teddy", "grizzly.jpg": "grizzly", "black.jpg": "black"}
    assert all(r.status in (OK, UNSURE) and r.model for r in got.values())
    assert service.stop(signal.SIGINT) == 0
    assert "watching 1 folder" in service.stderr
    assert_well_formed(log_path)


# --- catch-up and kill -9 ----------------------------------------------------------------------

def test_catch_up_classifies_what_arrived_while_down_and_nothing_twice(tmp_path: Path,
                                                                       headless) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in GOOD:
        shutil.copy(FIXTURES / name, inbox / name)
    config = write_toml(tmp_path)
    log_path = tmp_path / "data" / "results.csv"

    service = headless(config)  # files that were there before the first start
    first = wait_rows(log_path, len(GOOD))
    assert {Path(r.path).name: r.label for r in first} == GOOD
    assert service.stop() == 0

    tiny_jpeg(inbox / "while_down.jpg", 1)  # arrived while the service was down
    shutil.copy(FIXTURES / "grizzly_2.jpg", inbox / "teddy_1.jpg")  # replaced: a new file
    service = headless(config)
    got = wait_rows(log_path, len(GOOD) + 2)
    assert service.stop() == 0
    assert sorted(Path(r.path).name for r in got[len(GOOD):]) == ["teddy_1.jpg", "while_down.jpg"]
    assert len(rows(log_path)) == len(GOOD) + 2  # nothing logged was classified again
    assert_well_formed(log_path)


def test_kill_9_mid_burst_then_files_while_down_then_restart(tmp_path: Path, headless) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_toml(tmp_path, batch_size=2)
    log_path = tmp_path / "data" / "results.csv"
    service = headless(config)
    burst = 120
    for n in range(burst):
        tiny_jpeg(inbox / f"burst_{n:04}.jpg", n)
    wait_rows(log_path, 4, proc=service.proc)
    # Freeze it, so "mid-burst" is a fact we check rather than a race, then kill it.
    service.proc.send_signal(signal.SIGSTOP)
    at_kill = len(rows(log_path))
    service.proc.kill()
    service.proc.wait(10)
    assert 0 < at_kill < burst
    with open(log_path, "ab") as f:  # as if the kill had torn the row being written
        f.write(b"2026-01-01T00:00:00+00:00,/torn/row.jpg,teddy,0.5")
    for n in range(20):
        tiny_jpeg(inbox / f"while_down_{n:02}.jpg", 1000 + n)

    service = headless(config)
    got = wait_rows(log_path, burst + 20, timeout=180, proc=service.proc)
    assert service.stop() == 0
    assert "torn last row" in service.stderr
    assert len(got) == burst + 20
    assert {r.path for r in got} == {str(p) for p in inbox.iterdir()}
    assert_well_formed(log_path)


# --- a 2,000-file burst ------------------------------------------------------------------------

def test_burst_of_2000_files_every_one_logged_once_memory_bounded(tmp_path: Path,
                                                                  headless) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log_path = tmp_path / "data" / "results.csv"
    # A queue smaller than the burst: the overflow must be caught up by scans, not lost.
    service = headless(write_toml(tmp_path, batch_size=16, queue_size=500))
    count = 2000
    for n in range(count):
        tiny_jpeg(inbox / f"img_{n:05}.jpg", n)
    got = wait_rows(log_path, count, timeout=600, proc=service.proc)
    peak = service.peak_rss_mb()
    assert service.stop() == 0
    assert len(got) == count and all(r.status != ERROR for r in got)
    assert_well_formed(log_path)
    log.info("2000-file burst: peak RSS %.0f MB", peak)
    assert peak < 1024, f"peak RSS {peak:.0f} MB"


# --- bad input, in-process ------------------------------------------------------------------

def _bad_files(folder: Path) -> dict[str, bytes]:
    jpeg = (FIXTURES / "teddy_2.jpg").read_bytes()
    webp = io.BytesIO()
    Image.open(FIXTURES / "grizzly_2.jpg").save(webp, "WEBP")
    return {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "text.jpg": b"this is not a picture\n" * 20,
        "random.png": random.Random(7).randbytes(4096),
        "bomb.png": bomb_png(20_000),
    }


def bomb_png(side: int) -> bytes:
    """A valid 1-bit PNG of side x side pixels (400 megapixels here), ~50 KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                        zlib.crc32(kind + data))
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    body = b"".join(packer.compress(row * 500) for _ in range(side // 500)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


ODD_NAMES = ["=SUM(A1).jpg", "@home.jpg", "+plus.jpg", "-minus.jpg", "a, b.jpg",
             'say "cheese".jpg', "new\nline.jpg", "ünïcødé 熊.jpg", "'quote.jpg"]


def test_bad_input_gives_error_rows_and_odd_names_round_trip(tmp_path: Path, engine,
                                                             services) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    service = services(config_for(tmp_path), engine)
    log_path = tmp_path / "data" / "results.csv"
    bad = _bad_files(inbox)
    webp = io.BytesIO()
    Image.open(FIXTURES / "grizzly_2.jpg").save(webp, "WEBP")
    for name, data in bad.items():
        (inbox / name).write_bytes(data)
    (inbox / "webp_named.jpg").write_bytes(webp.getvalue())
    for name in ODD_NAMES:
        shutil.copy(FIXTURES / "teddy_1.jpg", inbox / name)

    got = {Path(r.path).name: r for r in wait_rows(log_path, len(bad) + 1 + len(ODD_NAMES))}
    for name in bad:
        assert got[name].status == ERROR, got[name]
        assert got[name].detail and "\n" not in got[name].detail
    assert got["webp_named.jpg"].label == "grizzly"
    for name in ODD_NAMES:
        assert got[name].label == "teddy" and got[name].path == str(inbox / name)
    assert service.status().state == WATCHING  # alive throughout
    drop(FIXTURES / "black_2.jpg", inbox / "after.jpg")
    assert wait_rows(log_path, len(got) + 1)[-1].label == "black"
    assert_well_formed(log_path)
    assert service.status().errors_today == len(bad)


def test_a_name_that_is_not_utf8_is_logged_once_and_not_again_after_a_restart(
        tmp_path: Path, engine, services) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log_path = tmp_path / "data" / "results.csv"
    config = config_for(tmp_path)
    service = services(config, engine)
    bad = os.fsencode(inbox) + b"/bad\xff\xfename.jpg"
    with open(bad, "wb") as out:
        out.write((FIXTURES / "teddy_1.jpg").read_bytes())
    (row,) = wait_rows(log_path, 1)
    assert row.path == os.fsdecode(bad) and row.label == "teddy"
    service.stop()
    assert b"'%" + os.fsencode(inbox) + b"/bad%FF%FEname.jpg" in log_path.read_bytes()

    again = services(config, engine)
    assert again._watcher.scan() == 0  # a scan sees the file again: the log already has it
    drop(FIXTURES / "black_2.jpg", inbox / "after.jpg")
    assert wait_rows(log_path, 2)[-1].label == "black"
    again.stop()
    assert [Path(r.path).name for r in rows(log_path)] == [Path(row.path).name, "after.jpg"]
    assert_well_formed(log_path)


def test_special_files_get_one_error_row_each_and_are_never_moved(
        tmp_path: Path, engine, services) -> None:
    from conftest import make_special_files

    inbox, before, dest = tmp_path / "inbox", tmp_path / "inbox" / "before", tmp_path / "sorted"
    before.mkdir(parents=True)
    early = make_special_files(before)  # found by the catch-up scan
    log_path = tmp_path / "data" / "results.csv"
    config = config_for(tmp_path, watch=(WatchConfig(path=inbox, recursive=True),),
                        sort=SortConfig(enabled=True, destination=dest))
    service = services(config, engine)
    flat = tmp_path / "flat"  # not recursive: a folder named like an image is reported
    flat.mkdir()
    (flat / "folder.jpg").mkdir()
    after = inbox / "after"
    after.mkdir()
    late = make_special_files(after)  # found by watchdog's events
    drop(FIXTURES / "teddy_1.jpg", after / "good.jpg")
    got = wait_rows(log_path, len(early) + len(late) + 1)
    for row in got:
        where, name = Path(row.path).parent, Path(row.path).name
        if name == "good.jpg":
            assert row.label == "teddy"
            continue
        expected = (early if where == before else late)[name]
        assert row.status == ERROR and expected in row.detail and row.moved_to == "", row
        assert os.path.lexists(row.path)  # never moved, never deleted
    assert service.status().state == WATCHING
    assert_well_formed(log_path)
    service.stop()

    flat_config = config_for(tmp_path, watch=(WatchConfig(path=flat),))
    services(flat_config, engine)
    (flat / "moved_in").mkdir()
    os.rename(flat / "moved_in", flat / "moved.jpg")
    rows_now = wait_rows(log_path, len(got) + 2)
    tail = {Path(r.path).name: r.detail for r in rows_now[len(got):]}
    assert tail == {"folder.jpg": "a folder, not an image file",
                    "moved.jpg": "a folder, not an image file"}


def test_one_service_per_log_and_a_crashed_ones_lock_is_taken_over(
        tmp_path: Path, headless, user_env) -> None:
    from conftest import run_cli

    (tmp_path / "inbox").mkdir()
    config = write_toml(tmp_path)
    log_path = tmp_path / "data" / "results.csv"
    first = headless(config)
    second = subprocess.run(
        [sys.executable, "-m", "teddywatch", "run", "--headless", "--config", str(config)],
        capture_output=True, text=True, env=user_env, cwd=REPO, timeout=120)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1].startswith(
        f"error: teddywatch is already running (pid {first.proc.pid}) with the results log ")
    assert "Traceback" not in second.stderr
    # classify never writes the log: it needs no lock and runs alongside
    assert run_cli("classify", str(FIXTURES / "teddy_1.jpg"), env=user_env).returncode == 0

    first.kill()  # a crash: the lock file stays, with first's pid in it
    assert (tmp_path / "data" / "results.csv.lock").read_text().strip() == str(first.proc.pid)
    third = headless(config)  # takes the stale lock over
    drop(FIXTURES / "black_1.jpg", tmp_path / "inbox" / "after_crash.jpg")
    (row,) = wait_rows(log_path, 1, proc=third.proc)
    assert row.label == "black"
    assert (tmp_path / "data" / "results.csv.lock").read_text().strip() == str(third.proc.pid)
    assert third.stop() == 0
    assert len(rows(log_path)) == 1


# --- sorting --------------------------------------------------------------------------------

def test_sorting_moves_into_label_folders_without_overwriting(tmp_path: Path, engine,
                                                              services) -> None:
    inbox, dest = tmp_path / "inbox", tmp_path / "sorted"
    inbox.mkdir()
    (dest / "teddy").mkdir(parents=True)
    (dest / "teddy" / "t.jpg").write_bytes(b"already here")
    config = config_for(tmp_path, sort=SortConfig(enabled=True, destination=dest))
    services(config, engine)
    log_path = tmp_path / "data" / "results.csv"
    drop(FIXTURES / "teddy_1.jpg", inbox / "t.jpg")
    (inbox / "broken.jpg").write_bytes(b"nope")
    got = {Path(r.path).name: r for r in wait_rows(log_path, 2)}
    assert got["t.jpg"].moved_to == str(dest / "teddy" / "t (2).jpg")
    assert got["broken.jpg"].moved_to == str(dest / "error" / "broken.jpg")
    assert (dest / "teddy" / "t.jpg").read_bytes() == b"already here"
    assert (dest / "teddy" / "t (2).jpg").read_bytes() == (FIXTURES / "teddy_1.jpg").read_bytes()
    assert sorted(p.name for p in inbox.iterdir()) == []
    assert_well_formed(log_path)


def test_sorting_by_copy_leaves_the_source_and_does_not_classify_it_again(
        tmp_path: Path, engine, services) -> None:
    inbox, dest = tmp_path / "inbox", tmp_path / "sorted"
    inbox.mkdir()
    config = config_for(tmp_path, sort=SortConfig(enabled=True, mode="copy", destination=dest))
    service = services(config, engine)
    log_path = tmp_path / "data" / "results.csv"
    drop(FIXTURES / "black_2.jpg", inbox / "b.jpg")
    (row,) = wait_rows(log_path, 1)
    assert row.moved_to == str(dest / "black" / "b.jpg")
    assert (inbox / "b.jpg").read_bytes() == (dest / "black" / "b.jpg").read_bytes()
    assert not [p for p in (dest / "black").iterdir() if p.name.startswith(".")]  # no temp left
    service._watcher.request_scan()  # a reconciliation scan sees the source: already logged
    drop(FIXTURES / "teddy_2.jpg", inbox / "t.jpg")
    assert [Path(r.path).name for r in wait_rows(log_path, 2)] == ["b.jpg", "t.jpg"]


def test_crash_between_row_and_move_is_finished_on_start(tmp_path: Path, engine,
                                                         services) -> None:
    inbox, dest = tmp_path / "inbox", tmp_path / "sorted"
    inbox.mkdir()
    shutil.copy(FIXTURES / "grizzly_1.jpg", inbox / "g.jpg")
    log_path = tmp_path / "data" / "results.csv"
    # The state a crash right after the fsynced row leaves: the row names the destination,
    # the file is still in the inbox.
    file = FileId.of(inbox / "g.jpg")
    ledger = Ledger(log_path)
    ledger.open()
    ledger.append(Result(path=file.path, label="grizzly", confidence=0.9, status=OK,
                         model="m", size=file.size, mtime_ns=file.mtime_ns,
                         moved_to=str(dest / "grizzly" / "g.jpg")))
    ledger.close()
    config = config_for(tmp_path, sort=SortConfig(enabled=True, destination=dest))
    service = services(config, engine)
    assert (dest / "grizzly" / "g.jpg").exists() and not (inbox / "g.jpg").exists()
    drop(FIXTURES / "teddy_2.jpg", inbox / "later.jpg")  # and it goes on working
    got = wait_rows(log_path, 2)
    assert [Path(r.path).name for r in got] == ["g.jpg", "later.jpg"]
    assert service.status().done_today == 2


def test_sorting_into_a_watched_folder_is_refused(tmp_path: Path, engine, user_env) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = config_for(tmp_path, watch=(WatchConfig(path=inbox, recursive=True),),
                        sort=SortConfig(enabled=True, destination=inbox / "sorted"))
    with pytest.raises(SortError, match="inside the watched folder"):
        Service(config, engine=engine).start()


# --- pause, resume, status, subscribe --------------------------------------------------------

def test_pause_resume_status_and_subscribers(tmp_path: Path, engine, services) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    events: list[object] = []
    service = Service(config_for(tmp_path), engine=engine)
    unsubscribe = service.subscribe(events.append)
    service.start()
    try:
        log_path = tmp_path / "data" / "results.csv"
        service.pause()
        assert service.status().state == PAUSED
        drop(FIXTURES / "teddy_1.jpg", inbox / "a.jpg")
        deadline = time.monotonic() + 10
        while service.status().queue_length < 1:  # noticed and queued, not classified
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert rows(log_path) == []
        service.resume()
        wait_rows(log_path, 1)
        status = service.status()
        assert status.state == WATCHING and status.done_today == 1
        assert status.last_result is not None and status.last_result.label == "teddy"
        assert status.folders_watched == 1 and status.folders_missing == ()
        states = [e.state for e in events if isinstance(e, StatusSnapshot)]
        assert states[:4] == ["starting", "watching", "paused", "watching"]
        assert [e.label for e in events if isinstance(e, Result)] == ["teddy"]
        unsubscribe()
    finally:
        service.stop()
    assert service.status().state == "stopped"  # (no_leaked_threads checks the threads)


# --- notifications: burst logic (fake sender; the real D-Bus server is tested in test_tray) --

def _result(label: str, status: str = OK) -> Result:
    return Result(path=f"/p/{label}.jpg", label=label, confidence=0.97, status=status)


class Collect:
    """A sink that keeps what it is given, in order."""

    name, required = "collect", True

    def __init__(self) -> None:
        self.results: list[Result] = []

    def handle(self, result: Result) -> Result:
        self.results.append(result)
        return result

    def close(self) -> None:
        pass


def test_worker_runs_two_batches_at_once_and_keeps_their_order(tmp_path: Path, engine,
                                                                 monkeypatch) -> None:
    # The real onnx engine, spied on only to count overlapping predict() calls.
    files = []
    for copy in range(3):
        for name in sorted(GOOD):
            files.append(tmp_path / f"{copy}_{name}")
            shutil.copy(FIXTURES / name, files[-1])
    running, most, lock = [0], [0], threading.Lock()
    predict = engine.predict

    def counting_predict(images):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.05)  # long enough for the second batch to start meanwhile
            return predict(images)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(engine, "predict", counting_predict)
    jobs, sink = JobQueue(100), Collect()
    worker = Worker(engine, jobs, [sink], threshold=0.5, batch_size=2)
    assert worker.in_flight == 2
    for path in files:
        assert jobs.offer(FileId.of(path))
    worker.start()
    deadline = time.monotonic() + 60
    while len(sink.results) < len(files) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker.stop()
    assert [r.path for r in sink.results] == [str(p) for p in files]
    assert [r.label for r in sink.results] == [GOOD[p.name.split("_", 1)[1]] for p in files]
    assert most[0] == 2


def test_burst_summary_rules() -> None:
    burst = BurstSummary(summarise_after=3, burst_seconds=5)
    assert [m.title for m in burst.add(_result("grizzly"), 0)] == ["Grizzly bear, 97.0%"]
    shown = [burst.add(_result("teddy"), t) for t in (1, 1.5, 2, 2.5)]
    assert [len(s) for s in shown] == [1, 1, 0, 0]
    assert burst.due(6) == []  # not quiet long enough yet
    summary = burst.due(8)
    assert [m.title for m in summary] == ["5 images: 4 teddy, 1 grizzly"]
    assert burst.add(_result("error", ERROR), 20)[0].title == "Could not classify an image"


def test_notify_sink_sends_off_the_worker_thread_and_summarises_on_close() -> None:
    # A FAKE sender that records calls: this test is about the burst logic through the sink;
    # the real notification server (Xvfb + dbus + dunst) is exercised in test_tray.
    sent: list[tuple[str, str]] = []
    sink = NotifySink(NotifyConfig(summarise_after=2, burst_seconds=60),
                      send=lambda message: sent.append((message.title, message.body)))
    for label in ("teddy", "teddy", "black", "teddy"):
        sink.handle(_result(label))
    sink.close()
    assert [t for t, _ in sent] == ["Teddy bear, 97.0%", "Teddy bear, 97.0%",
                                    "4 images: 3 teddy, 1 black"]


def test_notifications_unavailable_are_logged_once_at_info(caplog) -> None:
    def broken(message) -> None:
        raise RuntimeError("org.freedesktop.Notifications was not provided by any service")

    caplog.set_level(logging.INFO, logger="teddywatch.sinks.notify")
    sink = NotifySink(NotifyConfig(summarise_after=10), send=broken)
    for _ in range(5):
        sink.handle(_result("teddy"))
    sink.close()
    records = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.INFO
