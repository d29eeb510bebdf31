"""No file stalls the others (issue 14, item 3): a decode that runs past `[decode]
time_limit_seconds` is stopped, its file gets an `error` row, and the rows after it keep coming.

The slow file is made here (`conftest.many_strip_tiff`: a million one-row strips, seconds of
Pillow's time before the first pixel). The tests set a 0.5 s limit and assert what happened,
never how long it took: the slow file's row says it took longer than 0.5 s, the files after it
have their right rows, and no decoder process is left behind.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import FIXTURES, answer_is_right, many_strip_tiff, run_cli
from teddywatch import decoderprocess, decoders
from teddywatch.config import ConfigError, DecodeConfig, load_config
from teddywatch.dispatch import too_slow
from teddywatch.decoders import DecoderPool
from teddywatch.imaging import DecodeError, decode
from teddywatch.pixelbudget import MB, PixelBudget
from teddywatch.results import ERROR
from test_service import assert_well_formed, config_for, drop, engine, services, wait_rows  # noqa: F401

LIMIT = 0.5
SLOW_REASON = "took longer than 0.5 s to decode (decode.time_limit_seconds in the config)"
FIXTURE_FILES = sorted(FIXTURES.glob("*.jpg"))


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"[[watch]]\npath = \"{tmp_path}\"\n\n{body}\n", encoding="utf-8")
    return path


def gone(pid: int) -> bool:
    """True once `pid` has ended and been reaped (no zombie left either)."""
    return not os.path.exists(f"/proc/{pid}")


def has_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open now."""
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # a descriptor closed while we looked
        return False


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def pool():
    """A private pool of one decoder process (the app's own stays untouched); closed after."""
    made: list[DecoderPool] = []

    def make(**kw) -> DecoderPool:
        made.append(DecoderPool(1, **kw))
        return made[-1]

    yield make
    for each in made:
        each.close()


# --- the command and the service ---------------------------------------------------------------

def test_classify_gives_the_slow_file_an_error_row_and_classifies_every_other(
        tmp_path: Path, user_env: dict[str, str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in FIXTURE_FILES:
        shutil.copy(path, folder / path.name)
    many_strip_tiff(folder / "m_strips.tif")  # sorted in among the photos: files follow it
    config = write_config(tmp_path, f"[decode]\ntime_limit_seconds = {LIMIT}")
    done = run_cli("--config", str(config), "classify", str(folder), "--format", "csv",
                   env=user_env)
    assert done.returncode == 1, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [Path(r["path"]).name for r in rows] == sorted([p.name for p in FIXTURE_FILES]
                                                          + ["m_strips.tif"])
    for row in rows:
        if row["path"].endswith("m_strips.tif"):
            assert (row["status"], row["detail"]) == ("error", SLOW_REASON)
        else:
            assert answer_is_right(row["path"], row["label"], row["status"]), row
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == f"  {folder / 'm_strips.tif'}: {SLOW_REASON}"


def test_the_service_gives_the_slow_file_its_row_and_carries_on(
        tmp_path: Path, engine, services) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = config_for(tmp_path)
    service = services(replace(config, decode=DecodeConfig(time_limit_seconds=LIMIT)), engine)
    log_path = config.log.path
    many_strip_tiff(tmp_path / "slow.tif")
    os.rename(tmp_path / "slow.tif", inbox / "slow.tif")
    for name in ("teddy_1.jpg", "grizzly_1.jpg", "black_1.jpg"):
        drop(FIXTURES / name, inbox / name)
    got = {Path(r.path).name: r for r in wait_rows(log_path, 4)}
    assert (got["slow.tif"].status, got["slow.tif"].detail) == (ERROR, SLOW_REASON)
    assert {name: got[name].label for name in ("teddy_1.jpg", "grizzly_1.jpg", "black_1.jpg")} \
        == {"teddy_1.jpg": "teddy", "grizzly_1.jpg": "grizzly", "black_1.jpg": "black"}
    assert service.status().state == "watching"
    drop(FIXTURES / "teddy_2.jpg", inbox / "later.jpg")  # a fresh decoder took over
    assert wait_rows(log_path, 5)[-1].label == "teddy"
    running = [process.proc.pid for process in decoders.POOL._idle]
    assert running, "the decoder processes were not in use"
    service.stop()
    wait_until(lambda: all(gone(pid) for pid in running), "the decoder processes to end")
    assert_well_formed(log_path)


# --- the decoder processes ---------------------------------------------------------------------

def test_a_decoder_that_crashes_costs_only_its_file(tmp_path: Path, pool) -> None:
    decoders_ = pool()
    decoders_.decode(FIXTURE_FILES[0], 224, 60)  # started and ready
    (process,) = decoders_._idle
    slow = many_strip_tiff(tmp_path / "slow.tif")
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(decoders_.decode(slow, 224, 60)))
    worker.start()
    wait_until(lambda: has_open(process.proc.pid, slow), "the decoder to open the slow file")
    os.kill(process.proc.pid, signal.SIGSEGV)  # as a bug in a decoding library would
    worker.join(60)
    ((error, _),) = outcome
    assert isinstance(error, DecodeError)
    assert str(error) == "the decoder crashed on this file (killed by SIGSEGV)"
    image, _ = decoders_.decode(FIXTURE_FILES[1], 224, 60)  # a new process takes the next
    assert image.tobytes() == decode(FIXTURE_FILES[1]).tobytes()
    assert not decoders_.broken and len(_live_processes) == 2


_live_processes: list = []


@pytest.fixture(autouse=True)
def _track_processes(monkeypatch: pytest.MonkeyPatch):
    """Remember every DecoderProcess made during a test (to find the busy one, and check all
    of them end)."""
    made = decoderprocess.DecoderProcess.__init__

    def init(self, *args, **kw):
        made(self, *args, **kw)
        _live_processes.append(self)

    monkeypatch.setattr(decoderprocess.DecoderProcess, "__init__", init)
    yield
    processes = list(_live_processes)
    _live_processes.clear()
    decoders.stop()
    for process in processes:
        process.close()
    assert [p.proc.pid for p in processes if p.proc.poll() is None] == [], "left running"


def test_a_decoder_process_gives_the_same_pixels_and_reasons_as_decoding_here(
        tmp_path: Path, pool) -> None:
    from PIL import Image

    photo = Image.open(FIXTURE_FILES[2]).convert("RGB").resize((1800, 1200))
    photo.save(tmp_path / "big.webp", "WEBP")                # scaled by libwebp
    photo.convert("RGBA").save(tmp_path / "rgba.png")        # strips, over the allowance
    (tmp_path / "text.jpg").write_text("not a picture")
    files = [*FIXTURE_FILES, tmp_path / "big.webp", tmp_path / "rgba.png",
             tmp_path / "text.jpg", *FIXTURE_FILES[:3], tmp_path / "missing.jpg"]
    here = [decoders.imaging.timed_decode(path, 224)[0] for path in files]
    # all at once: the process has the next file queued while it answers the last
    there = [outcome for outcome, _ in pool().decode_many(files, 224, 60)]
    for path, mine, theirs in zip(files, here, there):
        if isinstance(mine, Exception):
            assert (type(theirs), str(theirs)) == (type(mine), str(mine)), path
        else:
            assert (theirs.mode, theirs.size, theirs.tobytes()) == \
                (mine.mode, mine.size, mine.tobytes()), path


def test_a_killed_decode_gives_back_the_budget_it_held(tmp_path: Path, pool) -> None:
    budget = PixelBudget(64 * MB)
    slow = many_strip_tiff(tmp_path / "slow.tif")  # its frame (8 MB) is over the allowance
    outcome, _ = pool().decode(slow, 224, LIMIT, budget)
    assert str(outcome) == SLOW_REASON
    assert budget.used == 0


def test_frames_decoded_in_two_processes_share_the_apps_one_budget(tmp_path: Path) -> None:
    from PIL import Image

    # 2000x1500 RGBA PNGs: 12 MB frames, over the two processes' allowances (2 x 4 MB) together;
    # a 16 MB budget has room for one frame at a time.
    names = []
    for n in range(2):
        Image.effect_noise((2000, 1500), 40 + n).convert("RGBA").save(tmp_path / f"{n}.png",
                                                                        compress_level=1)
        names.append(tmp_path / f"{n}.png")
    budget = PixelBudget(16 * MB)
    two = DecoderPool(2)
    try:
        two.start()
        results: list = [None, None]
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, two.decode(names[i], 224, 60, budget))) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        two.close()
    assert [image.size for image, _ in results] == [(500, 375), (500, 375)]
    assert 2000 * 1500 * 4 <= budget.peak <= 16 * MB  # each frame was granted, never both
    assert budget.used == 0


def test_an_idle_decoder_ends_and_the_next_file_gets_a_new_one(pool) -> None:
    quick = pool(idle_seconds=0.2)
    first, _ = quick.decode(FIXTURE_FILES[0], 224, 60)
    (process,) = _live_processes
    wait_until(lambda: process.proc.poll() is not None, "the idle decoder to end")
    assert process.proc.returncode == 0
    second, _ = quick.decode(FIXTURE_FILES[1], 224, 60)
    assert first.mode == second.mode == "RGB" and len(_live_processes) == 2
    assert not quick.broken


def test_where_no_decoder_can_start_files_are_decoded_here_and_that_is_logged(
        pool, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="teddywatch.decoders")
    monkeypatch.setattr(decoderprocess, "_command",
                        lambda *args: [sys.executable, "-c", "raise SystemExit(3)"])
    broken = pool()
    for path in FIXTURE_FILES[:3]:
        image, _ = broken.decode(path, 224, LIMIT)
        assert image.mode == "RGB"
    assert "exit code 3" in broken.broken
    (record,) = caplog.records
    assert record.getMessage().endswith(
        "decoding in teddywatch's own process instead, without the time limit")


def test_time_limit_0_decodes_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoders, "_limit", 0.0)
    decoders.start()
    outcomes = list(decoders.decode_all(FIXTURE_FILES[:3]))
    assert [image.mode for image, _ in outcomes] == ["RGB"] * 3
    assert _live_processes == [] and decoders.POOL._idle == []


# --- the setting ---------------------------------------------------------------------------------

def test_the_limit_is_read_from_the_config(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path, "")).decode.time_limit_seconds == 5.0
    for value in ("0", "0.5", "30"):
        config = write_config(tmp_path, f"[decode]\ntime_limit_seconds = {value}")
        assert load_config(config).decode.time_limit_seconds == float(value)
    assert too_slow(5.0).startswith("took longer than 5 s to decode")


@pytest.mark.parametrize("value, shown", [("-1", "-1"), ("0.05", "0.05"), ("3601", "3601"),
                                          ('"5"', "'5'"), ("true", "True")])
def test_a_bad_limit_is_one_line_naming_file_key_and_what_is_expected(
        tmp_path: Path, user_env: dict[str, str], value: str, shown: str) -> None:
    config = write_config(tmp_path, f"[decode]\ntime_limit_seconds = {value}")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = str(caught.value)
    assert message.startswith(f"{config}: decode.time_limit_seconds: expected ")
    assert f"(got {shown})" in message and "\n" not in message
    done = run_cli("--config", str(config), "classify", str(FIXTURE_FILES[0]), env=user_env)
    assert done.returncode == 2 and done.stderr == f"error: {message}\n"
