"""`teddywatch run` as started from a desktop, each test with its own Xvfb, session bus and
dunst (so one test may take its bus away): a start-up error reaches the desktop, and losing the
session bus ends the app quietly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gui_tools import start_desktop_session, wait_for

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pystray")]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def session(tmp_path: Path):
    (tmp_path / "desktop").mkdir()
    desktop = start_desktop_session(tmp_path / "desktop")
    yield desktop
    desktop.close()


def start_run(home: Path, session, model: Path | None = None, backend: str = "appindicator",
              extra: str = "") -> tuple[subprocess.Popen, Path, Path]:
    """`python -m teddywatch run --config FILE` with the real model (or `model`); returns the
    process, its stderr file and its app log file."""
    inbox = home / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    lines = [f"[[watch]]\npath = '{inbox}'", f"[log]\npath = '{home / 'results.csv'}'",
             "[service]\nsettle_seconds = 0.2"]
    if model is not None:
        lines.append(f"[model]\npath = '{model}'")
    lines.append(extra)
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {**os.environ, **session.env, "HOME": str(home), "PYSTRAY_BACKEND": backend,
           "XDG_STATE_HOME": str(home / "state"), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
    stderr = home / "stderr.txt"
    with open(stderr, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "teddywatch", "run", "--config",
                                    str(config)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=err)
    return process, stderr, home / "state" / "teddywatch" / "log" / "teddywatch.log"


def test_the_package_under_test_is_this_checkout(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", "import teddywatch; print(teddywatch.__file__)"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).is_relative_to(ROOT)


def shown_until_quit(process: subprocess.Popen, stderr: Path, session, needle: str) -> str:
    """The start-up error reaches the desktop once (naming `needle`) while the error icon stays
    up; SIGTERM (as Quit does) then ends it with exit code 2 and no traceback. Returns stderr."""
    try:
        notes = wait_for(lambda: [n for n in session.notifications()
                                  if n[1] == "teddywatch could not start"] or process.poll(),
                         timeout=60, what="the start-up error on the desktop")
        assert process.poll() is None, stderr.read_text()  # the error icon stays up
        assert len(notes) == 1 and needle in notes[0][2], notes
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = stderr.read_text(encoding="utf-8")
    assert code == 2, err
    assert "Traceback" not in err
    return err


def test_a_wrong_model_path_is_notified_and_the_tray_waits_for_quit(tmp_path: Path,
                                                                    session) -> None:
    missing = tmp_path / "models" / "nope.onnx"
    process, stderr, log_file = start_run(tmp_path / "home", session, model=missing)
    err = shown_until_quit(process, stderr, session, str(missing))
    assert f"error: {missing}: model file not found" in err
    details = log_file.read_text(encoding="utf-8")
    assert "teddywatch could not start" in details and "Traceback" in details  # at DEBUG


def test_a_config_that_does_not_load_is_notified_too(tmp_path: Path, session) -> None:
    """Before any service exists (a config mistake), a desktop start still shows the error."""
    process, stderr, _ = start_run(tmp_path / "home", session,
                                   extra="[model]\nunsure_treshold = 0.7")
    err = shown_until_quit(process, stderr, session, "unsure_treshold")
    assert any(line.startswith("error: ") and "did you mean 'model.unsure_threshold'" in line
               for line in err.splitlines()), err


def test_losing_the_session_bus_ends_the_app_quietly_with_one_line(tmp_path: Path,
                                                                   session) -> None:
    home = tmp_path / "home"
    process, stderr, log_file = start_run(home, session)
    try:
        wait_for(lambda: "running in the tray" in stderr.read_text() or process.poll(),
                 timeout=60, what="the tray")
        # A row proves the service is past its start (and the tray past its set-up).
        shutil.copy(FIXTURES / "teddy_1.jpg", home / "inbox" / "teddy.jpg")
        wait_for(lambda: (home / "results.csv").exists()
                 and "teddy.jpg" in (home / "results.csv").read_text(encoding="utf-8"),
                 timeout=60, what="the dropped file's row")
        # The tray's set-up ends by reporting what the desktop lacks (this one has no tray
        # watcher): wait for that notification, so the bus is not taken away in the middle.
        wait_for(lambda: any(n[1] == "teddywatch: something is missing"
                             for n in session.notifications()), timeout=60,
                 what="the set-up's report")
        bus = session.processes[1]
        assert bus.args[0] == "dbus-daemon"
        bus.kill()
        bus.wait(10)
        code = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = stderr.read_text(encoding="utf-8")
    details = log_file.read_text(encoding="utf-8")
    assert code == 0, err
    assert "Traceback" not in err and "g-io-error-quark" not in err
    assert "Traceback" not in details  # the closed connection's error is one DEBUG line
    said = [line for line in err.splitlines() if "session bus" in line]
    assert said == ["the desktop session ended (its D-Bus session bus closed); stopping"]
