"""Notifications people can act on, under a real X server (Xvfb), a real session bus and a real
notification server (dunst), all started here.

`dbus-monitor` on the session bus records each Notify call as the server receives it, so the tests
read the app icon, the `image-path` hint and the actions off the wire. A click is dunst's own
`dunstctl action`, which makes dunst emit `ActionInvoked` as it does for a mouse click. The opener
is a script named by TEDDYWATCH_OPENER that records its argument, so nothing real is started.
Only the model is replaced (every picture is a teddy, 99.7%).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from gui_tools import DesktopSession, require_binaries, start_desktop_session, wait_for
from test_tray import StubEngine  # stands in for the model only: a fixed answer
from teddywatch.config import (Config, GalleryConfig, LogConfig, NotifyConfig, ServiceConfig,
                               WatchConfig)
from teddywatch.sinks import notifier
from teddywatch.sinks.notifier import Message, Notifier

pytestmark = pytest.mark.timeout(120)

FIXTURES = Path(__file__).parent / "fixtures"



@pytest.fixture(scope="module")
def desktop_session(tmp_path_factory) -> DesktopSession:
    require_binaries("dunstctl", "dbus-monitor")
    session = start_desktop_session(tmp_path_factory.mktemp("desktop"))
    yield session
    session.close()


@pytest.fixture
def desktop(desktop_session: DesktopSession, home: Path, monkeypatch) -> DesktopSession:
    """This test's env points at the session, and the process-wide notifier is a fresh one
    (its D-Bus connection is made on this bus, and it hears this server's clicks)."""
    for key, value in desktop_session.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(notifier, "_default", Notifier())
    dunstctl(desktop_session, "close-all")
    return desktop_session


@pytest.fixture
def opened(home: Path, monkeypatch) -> Path:
    """TEDDYWATCH_OPENER is a script that appends what it is asked to open to a file."""
    record = home / "opened.txt"
    script = home / "record-open.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{record}'\n", encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("TEDDYWATCH_OPENER", str(script))
    return record


@pytest.fixture
def monitor(desktop_session: DesktopSession, home: Path):
    """dbus-monitor recording every Notify call on the session bus."""
    out = home / "notify-calls.txt"
    with out.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            ["dbus-monitor", "--address", desktop_session.bus_address,
             "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"],
            stdout=sink, stderr=subprocess.DEVNULL)
    # It prints its own NameAcquired signal once it is listening.
    wait_for(lambda: "NameAcquired" in out.read_text(encoding="utf-8"), timeout=10,
             what="dbus-monitor to start")
    yield lambda: notify_calls(out.read_text(encoding="utf-8"))
    process.terminate()
    process.wait(5)


@dataclass
class NotifyCall:
    app_name: str
    app_icon: str
    summary: str
    body: str
    actions: list[str]
    hints: dict[str, str]


def notify_calls(text: str) -> list[NotifyCall]:
    """Parse dbus-monitor's text for Notify(app_name, id, icon, summary, body, actions, hints,
    timeout). Strings are quoted; actions are the first array; hints are dict entries."""
    calls = []
    for block in text.split("method call ")[1:]:
        if "member=Notify" not in block.splitlines()[0]:
            continue
        head, _, rest = block.partition("array [")
        actions_text, _, hints_text = rest.partition("]")
        strings = re.findall(r'^\s*string "(.*)"$', head, re.M)
        hints = dict(re.findall(r'dict entry\(\s*string "([^"]*)"\s*variant\s+\w+ "?([^"\n]*)"?',
                                hints_text))
        calls.append(NotifyCall(strings[0], strings[1], strings[2], strings[3],
                                re.findall(r'string "(.*)"', actions_text), hints))
    return calls


def dunstctl(session: DesktopSession, *args: str) -> str:
    return subprocess.run(["dunstctl", *args], env={**os.environ, **session.env},
                          capture_output=True, text=True, timeout=10, check=True).stdout


def displayed(session: DesktopSession) -> int:
    out = dunstctl(session, "count", "displayed").strip()
    return int(out) if out.isdigit() else 0


def make_config(home: Path, **notify) -> Config:
    inbox = home / "inbox"
    inbox.mkdir(exist_ok=True)
    return Config(watch=(WatchConfig(path=inbox),), log=LogConfig(path=home / "results.csv"),
                  notify=NotifyConfig(**notify),
                  service=ServiceConfig(settle_seconds=0.2, rescan_minutes=60),
                  gallery=GalleryConfig(enabled=True, items=50))


def drop(folder: Path, fixture: str, name: str) -> Path:
    partial = folder / (name + ".part")
    shutil.copy(FIXTURES / fixture, partial)
    os.replace(partial, folder / name)
    return folder / name


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


# --- a result ----------------------------------------------------------------------------------

def test_a_result_carries_the_icon_and_picture_and_a_click_opens_the_picture(
        desktop, monitor, opened, home) -> None:
    from teddywatch.service import Service

    config = make_config(home, summarise_after=3, burst_seconds=0.5)
    service = Service(config, engine=StubEngine())
    service.start()
    try:
        photo = drop(config.watch[0].path, "teddy_1.jpg", "IMG_0042.jpg")
        (call,) = wait_for(lambda: [c for c in monitor() if c.summary == "Teddy bear, 99.7%"],
                           timeout=20, what="the result's Notify call")
        assert call.app_name == "teddywatch" and call.body == "IMG_0042.jpg"
        # The app icon: the tray's bear, as a PNG in the data folder.
        assert call.app_icon.startswith("file://") and call.app_icon.endswith("/teddywatch.png")
        icon = Path(call.app_icon.removeprefix("file://"))
        assert icon.parent == home / "data" / "teddywatch"
        with Image.open(icon) as image:
            assert image.format == "PNG" and image.size == (256, 256)
        # The picture, for servers that show images; the default action is the click.
        assert call.hints["image-path"] == photo.as_uri()
        assert call.actions[0::2] == ["default"]
        wait_for(lambda: displayed(desktop) == 1, timeout=10, what="dunst to show it")

        dunstctl(desktop, "action", "0")  # what a click on the notification does
        wait_for(lambda: lines(opened), timeout=10, what="the opener to run")
        assert lines(opened) == [str(photo)]
    finally:
        service.stop()


def test_an_error_opens_only_a_regular_file(tmp_path) -> None:
    from teddywatch.results import ERROR, Result
    from teddywatch.sinks.notify import single_message

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    device = tmp_path / "zero.jpg"
    device.symlink_to("/dev/zero")
    for path, opens in ((broken, str(broken)), (pipe, None), (device, None)):
        message = single_message(Result(path=str(path), label="", confidence=float("nan"),
                                        status=ERROR, model="stub", detail="cannot decode"))
        assert (message.title, message.image, message.opens) == (
            "Could not classify an image", None, opens), path


# --- a burst -----------------------------------------------------------------------------------

@pytest.mark.parametrize("served", [False, True], ids=["page file", "gallery server"])
def test_a_burst_summary_click_opens_the_gallery(desktop, monitor, opened, home,
                                                 served) -> None:
    """summarise_after=1: the first result alone, then one summary. burst_seconds is long so the
    summary comes when the service stops (the sink sends what is due on close), not on a timer.
    With the gallery served (the tray and run --headless pass its address) a click opens that."""
    from teddywatch.gallery import default_page
    from teddywatch.service import Service

    config = make_config(home, summarise_after=1, burst_seconds=600)
    link = "http://127.0.0.1:8765/a-token/" if served else None
    service = Service(config, engine=StubEngine(), gallery_link=link)
    service.start()
    stopped = False
    try:
        for n in range(3):
            drop(config.watch[0].path, "teddy_1.jpg", f"IMG_{n}.jpg")
        wait_for(lambda: len(lines(config.log.path)) == 4, timeout=30, what="three rows")
        wait_for(lambda: displayed(desktop) == 1, timeout=10, what="the first result shown")
        dunstctl(desktop, "close-all")
        service.stop()
        stopped = True
        (call,) = wait_for(lambda: [c for c in monitor() if c.summary.startswith("3 images")],
                           timeout=20, what="the summary's Notify call")
        assert call.summary == "3 images: 3 teddy"
        assert call.actions[0::2] == ["default"] and "image-path" not in call.hints
        wait_for(lambda: displayed(desktop) == 1, timeout=10, what="dunst to show the summary")
        dunstctl(desktop, "action", "0")
        wait_for(lambda: lines(opened), timeout=10, what="the opener to run")
        assert lines(opened) == [link or str(default_page())]
    finally:
        if not stopped:
            service.stop()


# --- when opening fails -------------------------------------------------------------------------

def test_an_opener_that_fails_is_told_and_leaves_no_zombie(desktop, home, monkeypatch,
                                                           caplog) -> None:
    psutil = pytest.importorskip("psutil")
    script = home / "no-viewer.sh"
    script.write_text("#!/bin/sh\necho 'xdg-open: no method available for opening' >&2\n"
                      "exit 3\n", encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("TEDDYWATCH_OPENER", str(script))
    caplog.set_level(logging.WARNING, logger="teddywatch.opener")
    photo = home / "IMG_7.jpg"
    shutil.copy(FIXTURES / "teddy_1.jpg", photo)
    received_before = len(desktop.notifications())

    notifier.default_notifier().send(Message("Teddy bear, 99.7%", photo.name, str(photo),
                                             str(photo)))
    wait_for(lambda: displayed(desktop) == 1, timeout=10, what="dunst to show it")
    dunstctl(desktop, "action", "0")

    told = wait_for(lambda: [n for n in desktop.notifications()[received_before:]
                             if n[1] == "teddywatch: cannot open"], timeout=15,
                    what="the notification saying the picture did not open")
    assert told == [("teddywatch", "teddywatch: cannot open",
                     f"{photo}: {script} exited with status 3: xdg-open: no method available "
                     "for opening")]
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot open {photo}: {script} exited with status 3: xdg-open: no method available "
        "for opening"]
    wait_for(lambda: not [c for c in psutil.Process().children()
                          if c.status() == psutil.STATUS_ZOMBIE], timeout=10,
             what="no zombie children")


def test_a_missing_opener_is_told(desktop, home, monkeypatch) -> None:
    from teddywatch.opener import open_path

    monkeypatch.setenv("TEDDYWATCH_OPENER", str(home / "not-installed"))
    failures: list[tuple[str, str]] = []
    open_path(home, on_error=lambda path, reason: failures.append((path, reason)))
    assert failures == [(str(home), "No such file or directory")]


# --- without desktop-notifier --------------------------------------------------------------------

PLYER_ONLY = """
import logging, sys
sys.modules["desktop_notifier"] = None  # the import fails as if it were not installed
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
import teddywatch
from teddywatch.sinks.notifier import Message, Notifier
print("teddywatch from", teddywatch.__file__)
plain = Notifier()
plain.send(Message("first", "one", "/nowhere.jpg", "/nowhere.jpg"))
plain.send(Message("second", "two"))
"""


def test_without_desktop_notifier_plyer_still_notifies_and_says_so_once(
        desktop, monitor) -> None:
    """In a process of its own: dbus-python (plyer's path) keeps its first session bus for the
    whole process, and this test's bus is not the first one a full test run meets."""
    out = subprocess.run([sys.executable, "-c", PLYER_ONLY], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    package = Path(__file__).resolve().parent.parent / "teddywatch" / "__init__.py"
    assert out[0] == f"teddywatch from {package}"
    assert out[1:] == ["teddywatch.sinks.notifier: desktop-notifier is not installed: "
                       "notifications have no picture and no click action (pip install "
                       "desktop-notifier); using plyer"]
    calls = wait_for(lambda: [c for c in monitor() if c.summary in ("first", "second")],
                     timeout=10, what="both Notify calls")
    assert [(c.summary, c.body, c.actions) for c in calls] == [("first", "one", []),
                                                               ("second", "two", [])]
    assert calls[0].app_icon.endswith("/teddywatch.png")  # plyer carries the icon too
