"""Regenerate the screenshots in docs/: the icon states, the open tray menu, the live gallery page.

    .venv/bin/python docs/make_screenshots.py

Needs what the GUI tests need (Xvfb, dbus-daemon, dunst, xdotool, imagemagick, chromium). The
menu is the real GTK menu pystray builds, shown under Xvfb; Xvfb has no system tray to click,
so it is popped up at the pointer from the GTK loop, exactly as a click on the icon would.
Sample results stand in for a day's work (no model is run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from gui_tools import Chromium, start_desktop_session, wait_for  # noqa: E402
from teddywatch import icons  # noqa: E402
from teddywatch.results import Result  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
# Confidences as a model gives them (IMG_0042 is the README's example log row), so the shots
# show format_confidence at work: 0.9996 is "99.9%", never "100%".
SAMPLES = [("teddy_1.jpg", "IMG_0042.jpg", "teddy", 0.9731, "ok"),
           ("grizzly_1.jpg", "IMG_0041.jpg", "grizzly", 0.9996, "ok"),
           ("black_2.jpg", "IMG_0040.jpg", "black", 0.6448, "unsure"),
           ("other_cat.jpg", "IMG_0039.jpg", "other", 0.8817, "ok"),
           ("teddy_2.jpg", "IMG_0038.jpg", "teddy", 0.9372, "ok"),
           ("black_1.jpg", "IMG_0037.jpg", "black", 0.9539, "ok"),
           ("grizzly_2.jpg", "IMG_0036.jpg", "grizzly", 0.8964, "ok"),
           ("other_drawing.jpg", "IMG_0035.jpg", "other", 0.7125, "ok")]


def icon_shots() -> None:
    """Each state at tray size (32 px), upscaled 4x without smoothing: what people see."""
    for state in icons.STATES:
        icons.draw(state, 32).resize((128, 128), Image.Resampling.NEAREST).save(
            DOCS / f"icon-{state}.png")


def sample_results(folder: Path) -> list[Result]:
    """Oldest first, a minute apart, as files in `folder`."""
    start = datetime.now().astimezone().replace(microsecond=0) - timedelta(minutes=10)
    out = []
    for minute, (fixture, name, label, confidence, status) in enumerate(reversed(SAMPLES)):
        target = folder / name
        shutil.copy(FIXTURES / fixture, target)
        st = target.stat()
        out.append(Result(path=str(target), label=label, confidence=confidence, status=status,
                          model="bears-int8.onnx@05436178",
                          time=start + timedelta(minutes=minute),
                          size=st.st_size, mtime_ns=st.st_mtime_ns))
    return out


def gallery_shot(work: Path, results: list[Result]) -> None:
    """The live page as the gallery server serves it, one result already corrected."""
    from teddywatch.gallery import Gallery
    from teddywatch.gallery.server import GalleryServer
    from teddywatch.teach.corrections import CorrectionStore

    gallery = Gallery(work / "site" / "gallery.html")
    gallery.add_batch(results + [Result.failed(str(work / "inbox" / "download.jpg"),
                                               "not an image: the file is HTML")])
    store = CorrectionStore(work / "corrections")
    unsure = next(r for r in results if r.status == "unsure")
    store.add(unsure.path, "grizzly", was=unsure.label, was_confidence=unsure.confidence)
    server = GalleryServer(gallery, corrections=store).start(_Labels())
    browser = Chromium(width=1000, height=700)
    try:
        browser.open(server.url)
        assert browser.console_errors() == [], browser.console_errors()
        browser.screenshot(DOCS / "gallery.png")
    finally:
        browser.close()
        server.close()


class _Labels:
    """The model's labels, all the page asks for until a correction is sent (none is here)."""

    labels = ("black", "grizzly", "other", "teddy")


def menu_shot(work: Path, results: list[Result]) -> None:
    session = start_desktop_session(work)
    os.environ.update(session.env)
    try:
        _menu_shot_in(session, work, results)
    finally:
        session.close()


def _menu_shot_in(session, work: Path, results: list[Result]) -> None:
    from gi.repository import GLib, Gtk
    import pystray._gtk

    from teddywatch.config import Config, LogConfig, WatchConfig
    from teddywatch.gallery import Gallery
    from teddywatch.tray import Tray

    os.environ["XDG_CONFIG_HOME"] = str(work / "config")
    config = Config(watch=(WatchConfig(path=work / "inbox"),),
                    log=LogConfig(path=work / "results.csv"))
    tray = Tray(_StillService(results), config, icon_class=pystray._gtk.Icon,
                gallery=Gallery(work / "site" / "gallery.html"), recent=results, notify=lambda *_: None)
    xdo = {**os.environ, **session.env}

    def shoot() -> None:
        try:
            wait_for(lambda: getattr(tray.icon, "_menu_handle", None) is not None,
                     what="the GTK menu")
            subprocess.run(["xdotool", "mousemove", "40", "30"], env=xdo, check=True)
            # What pystray does on a right click on the status icon, minus the positioning
            # relative to an icon that no tray has embedded: open at the pointer.
            GLib.idle_add(lambda: tray.icon._menu_handle.popup(
                None, None, None, None, 3, Gtk.get_current_event_time()) and False)
            time.sleep(1.0)  # let GTK map and paint the menu
            # Hover "Recent results" to open its submenu too.
            subprocess.run(["xdotool", "mousemove", "90", "30", "mousemove", "90", "97"],
                           env=xdo, check=True)
            time.sleep(1.5)
            raw = work / "root.png"
            subprocess.run(["import", "-window", "root", str(raw)], env=xdo, check=True)
            shot = Image.open(raw).convert("RGB")
            box = shot.point(lambda v: 255 if v > 0 else 0).getbbox()
            pad = 12
            shot.crop((max(box[0] - pad, 0), max(box[1] - pad, 0), box[2] + pad,
                       box[3] + pad)).save(DOCS / "tray-menu.png")
        finally:
            tray.quit()

    threading.Thread(target=shoot).start()
    tray.run()


class _StillService:
    """A service at rest after a day's work: the menu only reads status()."""

    def __init__(self, results: list[Result]) -> None:
        from teddywatch.service import StatusSnapshot

        self.snapshot = StatusSnapshot(state="watching", queue_length=0, done_today=128,
                                       errors_today=0, last_result=results[-1], last_error="",
                                       folders_watched=1, folders_missing=(), overflows=0)

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def subscribe(self, callback) -> None: ...

    def status(self):
        return self.snapshot


def main() -> None:
    icon_shots()
    with tempfile.TemporaryDirectory(prefix="teddywatch-shots-") as temp:
        work = Path(temp)
        (work / "inbox").mkdir()
        os.environ["XDG_DATA_HOME"] = str(work / "data")
        results = sample_results(work / "inbox")
        gallery_shot(work, results)
        menu_shot(work, results)
    print("wrote", ", ".join(sorted(p.name for p in DOCS.glob("*.png"))))


if __name__ == "__main__":
    main()
