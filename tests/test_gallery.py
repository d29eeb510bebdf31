"""The gallery page: escaping, the last N results, the thumbnail cache, atomic rewrites, and the
page as headless Chromium renders it (thumbnail count, the label filter, no console errors)."""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gui_tools import Chromium, wait_for
from teddywatch.gallery import Gallery, GallerySink, thumb_key
from teddywatch.results import FileId, Result, format_confidence

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = '<img src=x onerror="window.__pwned=1"> & \'quotes\'.jpg'


def result_for(path: Path, label: str, confidence: float = 0.9, status: str = "ok",
               minutes: int = 0, **extra) -> Result:
    file = FileId.of(path)
    stamp = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc) + timedelta(minutes=minutes)
    return Result(path=file.path, label=label, confidence=confidence, status=status, time=stamp,
                  size=file.size, mtime_ns=file.mtime_ns, **extra)


@pytest.fixture
def photos(tmp_path: Path) -> list[tuple[Path, str]]:
    """The fixture photos copied to a temp folder, plus one with a hostile name."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    out = []
    for source in sorted(FIXTURES.glob("*.jpg")):
        target = inbox / source.name
        shutil.copy(source, target)
        out.append((target, source.name.split("_")[0]))
    hostile = inbox / HOSTILE
    shutil.copy(FIXTURES / "teddy_1.jpg", hostile)
    out.append((hostile, "teddy"))
    return out


def test_every_file_name_and_label_is_escaped(tmp_path: Path, photos) -> None:
    gallery = Gallery(tmp_path / "site" / "gallery.html")
    hostile_path = photos[-1][0]
    gallery.add(result_for(hostile_path, '<b>"label"</b>'))
    gallery.add(Result.failed(str(tmp_path / "<script>x()</script>.jpg"), 'bad "file" <i>'))
    page = gallery.write().read_text(encoding="utf-8")
    for raw in ("<img src=x", "<script>x()", '<b>"label"', "<i>"):
        assert raw not in page
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt; &amp; &#x27;quotes&#x27;.jpg" \
        in page
    assert "&lt;b&gt;&quot;label&quot;&lt;/b&gt;" in page


def test_each_card_says_which_model_version_answered(tmp_path: Path, photos) -> None:
    gallery = Gallery(tmp_path / "gallery.html")
    (first, label1), (second, label2) = photos[0], photos[1]
    gallery.add_batch([result_for(first, label1, model="bears-int8.onnx@8a52900c"),
                       result_for(second, label2, minutes=1, model="bears-int8.onnx@8a52900c+v2")])
    page = gallery.page.read_text(encoding="utf-8")
    assert re.findall(r'<span class="model"[^>]*>([^<]*)</span>', page) == [
        "bears-int8.onnx@8a52900c+v2", "bears-int8.onnx@8a52900c"]
    # The file's page has no correction controls: it cannot send them anywhere.
    assert '<div class="teach"' not in page and 'id="undo-learning"' not in page


def test_a_name_that_is_not_utf8_is_shown_with_its_bytes_escaped(tmp_path: Path) -> None:
    bad = os.fsencode(tmp_path) + b"/bad\xff\xfename.jpg"
    with open(bad, "wb") as out:
        out.write((FIXTURES / "teddy_1.jpg").read_bytes())
    gallery = Gallery(tmp_path / "site" / "gallery.html")
    gallery.add(result_for(Path(os.fsdecode(bad)), "teddy"))
    page = gallery.write().read_text(encoding="utf-8")  # strict: it could be written
    assert "bad\\xff\\xfename.jpg" in page and "bad%FF%FEname.jpg" in page  # shown; linked


def test_keeps_only_the_last_items_newest_first(tmp_path: Path, photos) -> None:
    gallery = Gallery(tmp_path / "gallery.html", items=3)
    for minute, (path, label) in enumerate(photos[:5]):
        gallery.add(result_for(path, label, minutes=minute))
    page = gallery.write().read_text(encoding="utf-8")
    names = [p.name for p, _ in photos[:5]]
    assert page.count('<figure class="card') == 3
    assert names[0] not in page and names[1] not in page
    assert page.index(names[4]) < page.index(names[3]) < page.index(names[2])


def test_thumbnails_are_cached_renewed_on_change_and_pruned(tmp_path: Path, photos) -> None:
    gallery = Gallery(tmp_path / "gallery.html", items=2)
    (first, label), (second, label2), (third, label3) = photos[:3]
    gallery.add_batch([result_for(first, label), result_for(second, label2)])
    thumb = gallery.thumbs / f"{thumb_key(result_for(first, label))}.jpg"
    made = thumb.stat()
    gallery.add_batch([])  # a rewrite with nothing new reuses the cached file
    assert thumb.stat().st_mtime_ns == made.st_mtime_ns and thumb.stat().st_ino == made.st_ino

    os.utime(first, ns=(made.st_mtime_ns, made.st_mtime_ns + 10**9))  # the photo was edited
    edited = result_for(first, label)
    assert thumb_key(edited) != thumb.stem
    gallery.add_batch([edited, result_for(third, label3)])  # pushes the two old results out
    assert sorted(p.stem for p in gallery.thumbs.glob("*.jpg")) == sorted(
        [thumb_key(edited), thumb_key(result_for(third, label3))])


def test_rewrite_is_atomic_and_leaves_no_temp_files(tmp_path: Path, photos) -> None:
    gallery = Gallery(tmp_path / "site" / "gallery.html")
    gallery.add_batch([result_for(photos[0][0], "black")])
    with open(gallery.page, encoding="utf-8") as old:  # a reader holding the old page
        gallery.add_batch([result_for(photos[1][0], "black")])
        assert old.read().count('<figure class="card') == 1  # replaced, never truncated
    assert gallery.page.read_text(encoding="utf-8").count('<figure class="card') == 2
    assert sorted(p.name for p in gallery.page.parent.iterdir()) == [
        "gallery-version.js", "gallery.html", "thumbs"]


def test_moved_file_is_shown_from_where_it_went(tmp_path: Path, photos) -> None:
    source, label = photos[0]
    result = result_for(source, label)
    moved = tmp_path / "sorted" / label / source.name
    moved.parent.mkdir(parents=True)
    shutil.move(source, moved)
    gallery = Gallery(tmp_path / "gallery.html")
    page = gallery.add_batch([result.with_destination(str(moved))]).read_text(encoding="utf-8")
    assert moved.as_uri() in page and 'class="nothumb"' not in page
    assert len(list(gallery.thumbs.glob("*.jpg"))) == 1


def test_page_renders_in_chromium_with_a_working_filter(tmp_path: Path, photos) -> None:
    gallery = Gallery(tmp_path / "site" / "gallery.html")
    results = [result_for(path, label, confidence=0.997 - i / 40, minutes=i,
                          status="unsure" if i % 4 == 3 else "ok")
               for i, (path, label) in enumerate(photos)]
    results.append(Result.failed(str(tmp_path / "inbox" / "broken.jpg"), "not an image"))
    gallery.add_batch(results)
    expected_by_label = {label: sum(1 for _, l in photos if l == label) for _, label in photos}

    browser = Chromium()
    try:
        browser.open(gallery.page.as_uri())
        assert browser.evaluate("document.querySelectorAll('#cards .card').length") == \
            len(photos) + 1
        # Every thumbnail is a decoded image (the error result has a placeholder instead).
        assert browser.evaluate(
            "Array.from(document.querySelectorAll('#cards img'))"
            ".filter(i => i.complete && i.naturalWidth > 0).length") == len(photos)
        assert browser.evaluate("window.__pwned") is None  # the hostile name stayed text
        # The page shows Python's figures as they are (its script formats no numbers).
        assert browser.evaluate(
            "Array.from(document.querySelectorAll('#cards .card'))"
            ".map(c => (c.querySelector('.confidence') || {}).textContent || '')") == \
            [format_confidence(r.confidence) if r.status != "error" else ""
             for r in reversed(results)]
        for label, count in expected_by_label.items():
            browser.evaluate(f"document.querySelector('#filters button[data-label=\"{label}\"]')"
                             ".click()")
            shown = browser.evaluate(
                "Array.from(document.querySelectorAll('#cards .card:not([hidden])'))"
                ".map(c => c.dataset.label)")
            assert shown == [label] * count
        browser.evaluate("document.querySelector('#filters button[data-label=\"\"]').click()")
        assert browser.evaluate(
            "document.querySelectorAll('#cards .card:not([hidden])').length") == len(photos) + 1
        assert browser.console_errors() == []
    finally:
        browser.close()


class CountingGallery(Gallery):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[int] = []

    def write(self) -> Path:
        count = len(self)
        page = super().write()
        self.writes.append(count)  # after the write: a test seeing it may read the page
        return page


def test_sink_writes_once_per_burst_off_the_workers_thread(tmp_path: Path, photos) -> None:
    gallery = CountingGallery(tmp_path / "gallery.html")
    sink = GallerySink(gallery, quiet_seconds=1.0)
    try:
        for path, label in photos[:4]:
            assert sink.handle(result_for(path, label)).path == str(path)  # passed on as is
        wait_for(lambda: gallery.writes, what="the burst to be written")
        assert gallery.writes == [4]
        assert gallery.page.read_text(encoding="utf-8").count('<figure class="card') == 4
    finally:
        sink.close()
    assert gallery.writes == [4]  # nothing pending: close does not rewrite


def test_sink_close_writes_what_is_pending(tmp_path: Path, photos) -> None:
    gallery = CountingGallery(tmp_path / "gallery.html")
    sink = GallerySink(gallery, quiet_seconds=60)  # would not write on its own during the test
    sink.handle(result_for(*photos[0]))
    sink.close()
    assert gallery.writes == [1] and gallery.page.exists()


def test_an_open_page_reloads_itself_when_rewritten_and_keeps_its_filter(tmp_path: Path,
                                                                         photos) -> None:
    gallery = Gallery(tmp_path / "site" / "gallery.html")
    (first, label1), (second, label2) = photos[0], photos[1]
    gallery.add_batch([result_for(first, label1)])
    browser = Chromium()
    try:
        browser.open(gallery.page.as_uri())
        assert browser.evaluate("document.querySelectorAll('#cards .card').length") == 1
        browser.evaluate(f"document.querySelector('#filters button[data-label=\"{label1}\"]')"
                         ".click(); window.__sameDocument = true")
        gallery.add_batch([result_for(second, label2, minutes=1)])  # the service wrote again

        def cards() -> int:
            try:
                # Counted once the new page has run its script (the cards come before it).
                return browser.evaluate("window.__sameDocument || document.readyState !== "
                                        "'complete' ? 0 : "
                                        "document.querySelectorAll('#cards .card').length")
            except AssertionError:  # evaluated while the page was being replaced
                return 0
        assert wait_for(cards, timeout=30, what="the page to reload with the new result") == 2
        # The label filter chosen before the reload still applies.
        assert browser.evaluate("document.querySelector('#filters button[aria-pressed=\"true\"]')"
                                ".dataset.label") == label1
        visible = browser.evaluate("Array.from(document.querySelectorAll("
                                   "'#cards .card:not([hidden])')).map(c => c.dataset.label)")
        assert visible == [label1] * (1 + (label2 == label1))
        assert browser.console_errors() == []
    finally:
        browser.close()


def test_headless_run_writes_the_gallery(tmp_path: Path, user_env) -> None:
    """`teddywatch run --headless` (what `make run` gives without a display) keeps the page too."""
    import signal
    import subprocess
    import sys

    from conftest import REPO

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[[watch]]\npath = "{inbox}"\n[notify]\nenabled = false\n'
                      '[service]\nsettle_seconds = 0.2\n', encoding="utf-8")
    page = Path(user_env["XDG_DATA_HOME"]) / "teddywatch" / "gallery.html"
    proc = subprocess.Popen([sys.executable, "-m", "teddywatch", "--config", str(config), "run",
                             "--headless"], cwd=REPO, env=user_env, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for(lambda: page.exists() or proc.poll() is not None, timeout=60,
                 what="the empty page at start")
        assert proc.poll() is None and "No results yet" in page.read_text(encoding="utf-8")
        shutil.copy(FIXTURES / "teddy_1.jpg", inbox / "IMG_0042.jpg")
        wait_for(lambda: "IMG_0042.jpg" in page.read_text(encoding="utf-8"), timeout=60,
                 what="the dropped photo on the page")
    finally:
        proc.send_signal(signal.SIGINT)
        stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, stderr
    assert (page.parent / "gallery-version.js").exists()
