"""Shared test helpers: an isolated user environment and the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"


def expected_label(path: str | Path) -> str:
    """A fixture's truth is its name's first part: black_1.jpg is black, other_dog.jpg other."""
    return Path(path).stem.split("_")[0]


def answer_is_right(path: str | Path, label: str, status: str) -> bool:
    """Bears must be named right and sure; anything else must be `other` or `unsure`."""
    truth = expected_label(path)
    if truth == "other":
        return label == "other" or status == "unsure"
    return label == truth and status == "ok"


@pytest.fixture
def user_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """HOME and the XDG folders point into tmp_path, so no test touches the real user's files."""
    home = tmp_path / "home"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_PICTURES_DIR": str(home / "Pictures"),
    }
    home.mkdir()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TEDDYWATCH_CONFIG", raising=False)
    return dict(os.environ)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private home, config, data, state and cache dir, side by side under tmp_path."""
    for name, sub in (("HOME", "home"), ("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                      ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.delenv("TEDDYWATCH_CONFIG", raising=False)
    return tmp_path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m teddywatch ARGS` the way a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", "teddywatch", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=cwd or REPO)


@pytest.fixture
def no_leaked_threads():
    """Fail a test that leaves a thread running (a service or observer not stopped cleanly)."""
    import threading
    import time

    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        # The decode pool (imaging.thread_pool) and the D-Bus loop that hears notification
        # clicks (sinks/notifier.py) live for the whole process by design.
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()
                  and not t.name.startswith(("teddywatch-decode", "teddywatch-dbus"))]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


def make_special_files(folder: Path) -> dict[str, str]:
    """Every kind of name that is not a regular file, and a word its reason must hold."""
    import socket

    os.mkfifo(folder / "fifo.jpg")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(folder / "sock.jpg"))
    except OSError:  # a tmp path too long for AF_UNIX: bind from inside the folder
        here = os.getcwd()
        os.chdir(folder)
        try:
            sock.bind("sock.jpg")
        finally:
            os.chdir(here)
    sock.close()
    os.symlink("/dev/zero", folder / "zero.jpg")
    os.symlink("/dev/urandom", folder / "urandom.jpg")
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    (folder / "elsewhere").mkdir()
    os.symlink(folder / "elsewhere", folder / "linked_folder.jpg")
    return {"fifo.jpg": "named pipe", "sock.jpg": "socket", "zero.jpg": "character device",
            "urandom.jpg": "character device", "dangling.jpg": "missing file",
            "loop_a.jpg": "loops", "loop_b.jpg": "loops", "linked_folder.jpg": "a folder"}


def many_strip_tiff(path: Path, strips: int = 1_000_000) -> Path:
    """A valid 8-pixel-wide greyscale TIFF of `strips` one-row strips, all pointing at the same
    8 bytes (8 MB, almost all of it the strip tables). Pillow makes a tile per strip before the
    first pixel: seconds of work and hundreds of MB for a million, a stall for whoever waits."""
    import struct

    width, data_at = 8, 8
    offsets_at = data_at + width
    counts_at = offsets_at + 4 * strips
    ifd_at = counts_at + 4 * strips
    long_, short = 4, 3  # TIFF field types
    entries = [(256, long_, 1, width), (257, long_, 1, strips), (258, short, 1, 8),
               (259, short, 1, 1), (262, short, 1, 1), (273, long_, strips, offsets_at),
               (277, short, 1, 1), (278, long_, 1, 1), (279, long_, strips, counts_at)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) if kind == long_ or count > 1
        else struct.pack("<HHIHH", tag, kind, count, value, 0)
        for tag, kind, count, value in entries) + struct.pack("<I", 0)
    path.write_bytes(b"II*\0" + struct.pack("<I", ifd_at) + bytes(range(width))
                     + struct.pack(f"<{strips}I", *[data_at] * strips)
                     + struct.pack(f"<{strips}I", *[width] * strips) + ifd)
    return path
