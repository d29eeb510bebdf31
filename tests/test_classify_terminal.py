"""`teddywatch classify` on a real terminal (a pseudo-terminal): the progress bar lives on stderr,
shows a rate and the time left, never gets into the rows, and is wiped when the run ends."""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from conftest import FIXTURES, REPO, run_cli

FIXTURE_FILES = sorted(FIXTURES.glob("*.jpg"))
BAR_TRACES = ("\r", "img/s", "classifying", "|", "\x1b")


def run_on_terminal(args: list[str], env: dict[str, str], stdout_on_terminal: bool
                    ) -> tuple[int, str, str]:
    """Run the CLI with stderr (and stdout, if asked) on a pseudo-terminal 120 columns wide.

    Returns the exit code, what the terminal received and what stdout's pipe received."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "teddywatch", *args], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stderr=slave,
                            stdout=slave if stdout_on_terminal else subprocess.PIPE)
    os.close(slave)
    piped: list[bytes] = []
    reader = None
    if proc.stdout is not None:
        reader = threading.Thread(target=lambda: piped.append(proc.stdout.read()))
        reader.start()
    received = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every end of the terminal is closed, the child has exited
            break
        if not chunk:
            break
        received += chunk
    os.close(master)
    code = proc.wait(timeout=30)
    if reader is not None:
        reader.join(30)
    return code, received.decode("utf-8", "replace"), b"".join(piped).decode("utf-8")


def screen(text: str) -> list[str]:
    """The lines a terminal shows for `text`: a carriage return goes back to the line's start
    and what follows overwrites what was there (the terminal turned each \\n into \\r\\n)."""
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        shown = ""
        for part in raw.split("\r"):
            shown = part + shown[len(part):]
        lines.append(shown.rstrip())
    return lines


def bar_env(user_env: dict[str, str]) -> dict[str, str]:
    # Draw every update (tqdm reads TQDM_* overrides), so the test never depends on timing.
    return {**user_env, "TQDM_MININTERVAL": "0", "COLUMNS": "120"}


def test_bar_on_stderr_terminal_shows_rate_and_time_left_and_never_touches_stdout(
        user_env: dict[str, str]) -> None:
    args = ["classify", str(FIXTURES), "--batch-size", "2"]
    code, terminal, stdout = run_on_terminal(args, bar_env(user_env), stdout_on_terminal=False)
    assert code == 0, terminal
    # The bar was drawn, with a count, a rate and the time left ...
    assert re.search(r"\d+(\.\d+)?img/s", terminal), terminal
    assert re.search(rf"\d+/{len(FIXTURE_FILES)} \[\d\d:\d\d<\d\d:\d\d", terminal), terminal
    assert "Traceback" not in terminal
    # ... and wiped at the end: the terminal shows nothing of it.
    assert not any(screen(terminal)), screen(terminal)
    # The rows on stdout are clean: header, one row per image, the summary.
    lines = stdout.splitlines()
    assert len(lines) == len(FIXTURE_FILES) + 2, stdout
    assert lines[0].split() == ["label", "confidence", "status", "file"]
    assert lines[-1].startswith(f"{len(FIXTURE_FILES)} images: ")
    for trace in BAR_TRACES:
        assert trace not in stdout, (trace, stdout)


def test_rows_and_bar_on_one_terminal_never_mix(user_env: dict[str, str], tmp_path: Path) -> None:
    for copy in range(2):
        for path in FIXTURE_FILES:
            shutil.copy(path, tmp_path / f"{copy}_{path.name}")
    args = ["classify", str(tmp_path), "--batch-size", "2"]
    code, terminal, _ = run_on_terminal(args, bar_env(user_env), stdout_on_terminal=True)
    assert code == 0, terminal
    assert re.search(r"\d+(\.\d+)?img/s", terminal), terminal  # the bar was there meanwhile
    shown = [line for line in screen(terminal) if line]
    # What stays on the screen is exactly the table: no line holds a piece of the bar.
    assert len(shown) == 2 * len(FIXTURE_FILES) + 2, shown
    assert shown[0].split() == ["label", "confidence", "status", "file"]
    for line in shown[1:-1]:
        assert re.fullmatch(r"\w+ +\d{1,3}\.\d% +(ok|unsure) +\S+\.jpg", line), line
    assert shown[-1].startswith(f"{2 * len(FIXTURE_FILES)} images: "), shown[-1]


def test_no_bar_when_stderr_is_not_a_terminal(user_env: dict[str, str]) -> None:
    proc = run_cli("classify", str(FIXTURES), "--batch-size", "2", env=bar_env(user_env))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_the_worktree_is_what_the_subprocess_runs(user_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-c", "import teddywatch; print(teddywatch.__file__)"],
                          capture_output=True, text=True, env=user_env, cwd=REPO)
    assert Path(proc.stdout.strip()).parent.parent == REPO, proc.stdout
