"""`teddywatch run` with no config at all, as `make run` starts it on a fresh machine."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO


def test_first_run_creates_the_default_inbox_and_stops_cleanly(user_env: dict[str, str]) -> None:
    env = {k: v for k, v in user_env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    inbox = Path(env["HOME"]) / "Pictures" / "teddywatch"
    proc = subprocess.Popen([sys.executable, "-m", "teddywatch", "run"], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if "watching 1 folder" in line or not line:
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=30)
    text = "".join(seen) + rest
    assert proc.returncode == 0, text
    assert inbox.is_dir()
    assert f"created {inbox}" in text
    assert "no display" in text and "watching 1 folder" in text
