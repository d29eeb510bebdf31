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
        # The decode pool (imaging.thread_pool) lives for the whole process by design.
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()
                  and not t.name.startswith("teddywatch-decode")]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"
