"""A hostile corpus in one burst (issue 14, item 8), made here: special files (FIFO, socket, links
to /dev/zero and /dev/urandom, a folder named like an image, dangling and looping links), a
name that is not UTF-8, an RGBA PNG, a TIFF with a million strips, Pillow's own corrupt cases
(`test_imaging.HOSTILE`, a DDS Pillow cannot decode among them), a bomb, and fuzz-like
truncations and bit flips of every format this Pillow writes, mixed with good photos.

Each runs once through `teddywatch classify` (the real command) and once through the running
service (`teddywatch run --headless` on a real folder): one row per entry, the photos right,
every failure one line, the log valid UTF-8, the service alive, no traceback.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import (FIXTURES, REPO, answer_is_right, make_special_files, many_strip_tiff)
from teddywatch.csvcells import restore
from teddywatch.results import ERROR
from test_imaging import HOSTILE
from test_service import _bad_files, assert_well_formed, headless, rows, wait_rows, write_toml  # noqa: F401

PHOTOS = ["teddy_1.jpg", "grizzly_2.jpg", "black_1.jpg", "other_cat.jpg", "other_person.jpg"]
SLOW = "took longer than 0.5 s to decode"
FUZZED = "fuzz"  # any outcome, as long as it is one row with a one-line reason
FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "TIFF": "tif", "WEBP": "webp",
           "BMP": "bmp", "ICO": "ico", "PPM": "ppm", "TGA": "tga", "PCX": "pcx",
           "JPEG2000": "jp2", "SGI": "sgi", "AVIF": "avif", "QOI": "qoi",
           "DDS": "dds", "SPIDER": "spi"}


def _writable_formats() -> dict[str, bytes]:
    """A small photo in every format this Pillow writes (some builds lack AVIF or JPEG 2000)."""
    photo = Image.open(FIXTURES / "teddy_2.jpg").convert("RGB").resize((160, 120))
    encoded = {}
    for fmt in FORMATS:
        buffer = io.BytesIO()
        try:
            photo.save(buffer, fmt)
        except (OSError, KeyError, ValueError):
            continue
        encoded[fmt] = buffer.getvalue()
    return encoded


def _fuzzed(data: bytes, seed: str) -> dict[str, bytes]:
    """Truncations at 2, 30, 70 and 97% and two copies with bytes flipped past the header."""
    out = {f"cut{pct:02d}": data[:max(1, len(data) * pct // 100)] for pct in (2, 30, 70, 97)}
    rng = random.Random(seed)
    for n in range(2):
        flipped = bytearray(data)
        for _ in range(24):
            at = rng.randrange(min(len(data) - 1, 32), len(data))
            flipped[at] ^= rng.randrange(1, 256)
        out[f"flip{n}"] = bytes(flipped)
    return out


def make_corpus(folder: Path) -> dict[bytes, str | None]:
    """Every hostile kind, written into `folder` back to back; file name (bytes) -> what its row
    must say: None for a photo classified right (its name says which), a word its `error`
    detail holds, or FUZZED. Every name matches the watched patterns (bytes decide formats)."""
    expected: dict[bytes, str | None] = {}

    def put(name: str | bytes, data: bytes, outcome: str | None) -> None:
        raw = name if isinstance(name, bytes) else name.encode()
        with open(os.fsencode(folder) + b"/" + raw, "wb") as out:
            out.write(data)
        expected[raw] = outcome

    for name in PHOTOS:
        put(name, (FIXTURES / name).read_bytes(), None)
    put(b"teddy_bad\xff\xfename.jpg", (FIXTURES / "teddy_1.jpg").read_bytes(), None)
    rgba = Image.open(FIXTURES / "grizzly_1.jpg").convert("RGBA").resize((1500, 1000))
    rgba.putalpha(Image.linear_gradient("L").resize((1500, 1000)).point(lambda v: 128 + v // 2))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    put("grizzly_rgba.png", buffer.getvalue(), None)
    many_strip_tiff(folder / "m_strips.tif")
    expected[b"m_strips.tif"] = SLOW
    for name, reason in make_special_files(folder).items():
        expected[name.encode()] = reason
    for name, (make, words) in HOSTILE.items():
        put(name + ".jpg", make(), words)
    for name, data in _bad_files(folder).items():
        put("bad-" + name, data, "image too large" if name == "bomb.png" else "")
    for fmt, data in _writable_formats().items():
        put(f"whole-{FORMATS[fmt]}.jpg", data, "whole")
        for kind, broken in _fuzzed(data, fmt).items():
            put(f"fuzz-{FORMATS[fmt]}-{kind}.jpg", broken, FUZZED)
    return expected


def check_row(name: bytes, outcome: str | None, path: str, label: str, status: str,
              detail: str) -> None:
    where = f"{os.fsdecode(name)!r}: {status} {label} {detail!r}"
    assert "\n" not in detail and "Traceback" not in detail, where
    if outcome is None:
        assert answer_is_right(os.fsdecode(name), label, status), where
    elif outcome == "whole":  # an intact file of any format Pillow writes is classified
        assert status != ERROR, where
    elif outcome == FUZZED:
        assert status != ERROR or detail, where
    else:
        assert status == ERROR and outcome in detail, where


@pytest.fixture
def corpus_config(tmp_path: Path) -> Path:
    config = write_toml(tmp_path)  # the service's test config: the inbox, a results log
    with open(config, "a", encoding="utf-8") as out:
        out.write("[decode]\ntime_limit_seconds = 0.5\n")
    return config


def test_classify_a_hostile_folder(tmp_path: Path, user_env: dict[str, str],
                                   corpus_config: Path) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    expected = make_corpus(folder)
    (folder / "folder.jpg").mkdir()  # classify walks into folders: its photo gets the row
    shutil.copy(FIXTURES / "black_2.jpg", folder / "folder.jpg" / "black_2.jpg")
    expected[b"folder.jpg/black_2.jpg"] = None
    done = subprocess.run([sys.executable, "-m", "teddywatch", "--config", str(corpus_config),
                           "classify", str(folder), "--format", "csv"],
                          capture_output=True, env=user_env, cwd=REPO, timeout=300)
    stdout = done.stdout.decode("utf-8")  # strict: valid UTF-8 whatever the names
    stderr = done.stderr.decode("utf-8")
    assert done.returncode == 1, stderr
    table = list(csv.DictReader(io.StringIO(stdout)))
    prefix = os.fsencode(folder) + b"/"
    got = {os.fsencode(restore(r["path"]))[len(prefix):]: r for r in table}
    assert len(table) == len(got) == len(expected)
    assert set(got) == set(expected)
    for name, outcome in expected.items():
        row = got[name]
        check_row(name, outcome, row["path"], row["label"], row["status"], row["detail"])
    # stderr holds the closing report only: a header, then indented lines naming files
    lines = stderr.splitlines()
    failed = sum(r["status"] == ERROR for r in table)
    assert lines[0] == f"error: {failed} of {len(table)} files could not be classified:", stderr
    assert all(line.startswith("  ") for line in lines[1:]), stderr


def test_the_service_takes_a_hostile_burst_and_stays_alive(tmp_path: Path, headless,
                                                           corpus_config: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log_path = tmp_path / "data" / "results.csv"
    service = headless(corpus_config)
    expected = make_corpus(inbox)  # written straight into the watched folder, back to back
    (inbox / "folder.jpg").mkdir()  # not walked (the watch is not recursive): reported
    expected[b"folder.jpg"] = "a folder, not an image file"
    got = wait_rows(log_path, len(expected), timeout=180, proc=service.proc)
    prefix = os.fsencode(inbox) + b"/"
    by_name = {os.fsencode(r.path)[len(prefix):]: r for r in got}
    assert len(got) == len(by_name) == len(expected)
    assert set(by_name) == set(expected)
    for name, outcome in expected.items():
        row = by_name[name]
        check_row(name, outcome, row.path, row.label, row.status, row.detail)
    assert_well_formed(log_path)  # valid UTF-8, no ragged row, every file once

    decoders_ = _children(service.proc.pid)
    shutil.copy(FIXTURES / "teddy_2.jpg", inbox / "after.jpg")  # still alive, still right
    assert wait_rows(log_path, len(expected) + 1, proc=service.proc)[-1].label == "teddy"
    assert service.stop(signal.SIGTERM) == 0
    assert "Traceback" not in service.stderr, service.stderr
    assert decoders_ and all(not os.path.exists(f"/proc/{pid}") for pid in decoders_)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found
