"""Decoding users' files: every hostile kind is a DecodeError with one line, good ones come out RGB."""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES
from teddywatch import imaging
from teddywatch.imaging import HEIF_SUPPORT, DecodeError, decode
from teddywatch.jpeg import eighth_scale_scans
from teddywatch.webp import scaled_decoder


def photo(size: tuple[int, int] = (320, 240), color: tuple[int, int, int] = (120, 80, 40)) -> Image.Image:
    """A small image with some structure, so encoders produce real data."""
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 16):
        image.paste((x % 255, 200, 30), (x, 0, x + 8, size[1]))
    return image


def save(image: Image.Image, path: Path, fmt: str, **options) -> Path:
    image.save(path, fmt, **options)
    return path


def bomb_png(path: Path, side: int = 40_000) -> Path:
    """A valid 1-bit PNG of side x side pixels that is a few hundred KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" * (1 + side // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row * 1000) for _ in range(side // 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))
    return path


def assert_one_line_error(path: Path, *words: str) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(path)
    message = str(caught.value)
    assert message and "\n" not in message
    for word in words:
        assert word in message
    return message


# --- hostile files -------------------------------------------------------------------------

def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.touch()
    assert_one_line_error(empty, "empty file")


def test_truncated_jpeg(tmp_path: Path) -> None:
    whole = save(photo(), tmp_path / "whole.jpg", "JPEG").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 3])
    assert_one_line_error(cut, "truncated")


def test_text_named_jpg(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("shopping list: honey, salmon, berries\n" * 10)
    assert_one_line_error(text, "not an image", "looks like text")


def test_random_bytes_named_png(tmp_path: Path) -> None:
    noise = tmp_path / "noise.png"
    noise.write_bytes(os.urandom(4096))
    assert_one_line_error(noise, "not an image")


def test_decompression_bomb_is_refused_without_allocating(tmp_path: Path) -> None:
    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    assert_one_line_error(bomb, "image too large: 1,600 Mpx over the 90 Mpx limit")


def test_image_just_over_the_pixel_limit_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Between 1x and 2x the limit Pillow only warns; teddywatch still refuses.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    big = save(photo((300, 200)), tmp_path / "big.png", "PNG")
    assert_one_line_error(big, "image too large: 300×200 = 0.06 Mpx over the 0.05 Mpx limit")


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path / "gone.jpg", "disappeared")


# --- files users really have ---------------------------------------------------------------

def test_webp_named_jpg_is_read_by_its_bytes(tmp_path: Path) -> None:
    misnamed = save(photo(), tmp_path / "holiday.jpg", "WEBP")
    image = decode(misnamed)
    assert image.mode == "RGB" and image.size == (320, 240)


@pytest.mark.parametrize("fmt,suffix", [("PNG", "png"), ("BMP", "bmp"), ("TIFF", "tif"),
                                        ("GIF", "gif"), ("WEBP", "webp"), ("AVIF", "avif")])
def test_common_formats(tmp_path: Path, fmt: str, suffix: str) -> None:
    image = decode(save(photo(), tmp_path / f"a.{suffix}", fmt))
    assert image.mode == "RGB" and image.size == (320, 240)


@pytest.mark.skipif(not HEIF_SUPPORT, reason="neither pi-heif nor pillow-heif is installed")
def test_heic(tmp_path: Path) -> None:
    # teddywatch reads HEIC with the decode-only pi-heif; writing one needs pillow-heif's encoder.
    writer = pytest.importorskip("pillow_heif", reason="pillow-heif (dev extra) writes the HEIC")
    path = tmp_path / "IMG_0001.HEIC"
    writer.from_pillow(photo()).save(path, quality=80)
    image = decode(path)
    assert image.mode == "RGB" and image.size == (320, 240)


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (64, 64), c) for c in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, green, blue = decode(path).getpixel((32, 32))
    assert red > 200 and blue < 50


def test_transparent_png_is_flattened_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (0, 0, 32, 64))
    image = decode(save(rgba, tmp_path / "logo.png", "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((48, 32)) == (255, 255, 255)
    assert image.getpixel((16, 32)) == (200, 0, 0)


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette = photo((64, 64)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = 0
    image = decode(save(palette, tmp_path / "icon.png", "PNG", transparency=0))
    assert image.mode == "RGB"


def test_sixteen_bit_greyscale_keeps_its_range(tmp_path: Path) -> None:
    deep = Image.new("I;16", (32, 32), 32768)
    image = decode(save(deep, tmp_path / "scan.png", "PNG"))
    assert image.mode == "RGB" and 120 <= image.getpixel((0, 0))[0] <= 136


def test_cmyk_jpeg(tmp_path: Path) -> None:
    image = decode(save(photo().convert("CMYK"), tmp_path / "print.jpg", "JPEG"))
    assert image.mode == "RGB"


@pytest.mark.parametrize("name,fmt,size,options,upright", [
    ("phone.jpg", "JPEG", (300, 200), {}, (200, 300)),
    ("camera.jpg", "JPEG", (2400, 1600), {"progressive": True}, (200, 300)),  # 1/8-scale scans
    ("phone.webp", "WEBP", (1200, 800), {}, (200, 300)),  # scaled by libwebp
])
def test_exif_orientation_is_applied(tmp_path: Path, name: str, fmt: str, size: tuple[int, int],
                                     options: dict, upright: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    path = save(photo(size), tmp_path / name, fmt, exif=exif.tobytes(), **options)
    assert decode(path, min_size=200).size == upright


def test_large_jpeg_is_decoded_in_draft_mode(tmp_path: Path) -> None:
    path = save(photo((4000, 3000)), tmp_path / "camera.jpg", "JPEG", quality=80)
    image = decode(path, min_size=224)
    width, height = image.size
    assert width <= 1000 and height <= 750  # scaled by at least 1/4 in the DCT
    assert min(width, height) >= 224  # but never below what the model needs


# --- progressive JPEG photos: only the scans a 1/8-scale decode reads ------------------------

def camera_photo(size: tuple[int, int] = (2400, 1800)) -> Image.Image:
    """A fixture bear scaled up to camera size, with fine noise so every AC band carries data."""
    rng = np.random.default_rng(0)
    base = np.asarray(Image.open(FIXTURES / "black_1.jpg").convert("RGB").resize(size),
                      dtype=np.int16)
    noisy = base + rng.integers(-12, 13, size=base.shape, dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def whole_file_decode(path: Path, monkeypatch: pytest.MonkeyPatch, **options) -> Image.Image:
    with monkeypatch.context() as patch:
        patch.setattr(imaging, "eighth_scale_scans", lambda data: None)
        return decode(path, **options)


@pytest.mark.parametrize("mode,subsampling", [("RGB", 2), ("RGB", 1), ("RGB", 0), ("L", 0)])
def test_progressive_jpeg_at_eighth_scale_gives_the_same_pixels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, subsampling: int) -> None:
    path = save(camera_photo().convert(mode), tmp_path / "web.jpg", "JPEG", quality=90,
                progressive=True, subsampling=subsampling)
    used = []
    monkeypatch.setattr(imaging, "eighth_scale_scans",
                        lambda data: used.append(len(data)) or eighth_scale_scans(data))
    fast = decode(path, min_size=224)
    assert fast.size == (300, 225) and used  # draft scale 1/8, through the reduced scans
    slow = whole_file_decode(path, monkeypatch, min_size=224)
    assert np.array_equal(np.asarray(fast), np.asarray(slow))
    assert len(eighth_scale_scans(path.read_bytes())) < 0.6 * path.stat().st_size


def test_truncated_progressive_jpeg(tmp_path: Path) -> None:
    path = save(camera_photo(), tmp_path / "cut.jpg", "JPEG", progressive=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert eighth_scale_scans(path.read_bytes()) is None  # the whole-file decode reports it
    assert_one_line_error(path, "truncated")


def test_only_plain_progressive_jpegs_are_reduced(tmp_path: Path) -> None:
    baseline = save(camera_photo((800, 600)), tmp_path / "baseline.jpg", "JPEG")
    assert eighth_scale_scans(baseline.read_bytes()) is None
    assert eighth_scale_scans(b"") is None
    assert eighth_scale_scans(b"\xff\xd8" + os.urandom(64)) is None
    assert eighth_scale_scans(b"\xff\xd8\xff\xc2\x00") is None


# --- large WebP photos: libwebp scales while decoding ----------------------------------------

def pillow_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode WebP the way Pillow alone does (what happens where libwebp is not reachable)."""
    monkeypatch.setattr(imaging, "scaled_decoder", lambda: None)


def test_libwebp_is_reachable_on_linux() -> None:
    # Pillow's Linux wheels ship libwebp as a shared library; if this fails the fast path is dead.
    if sys.platform.startswith("linux"):
        assert scaled_decoder() is not None


def test_large_webp_is_scaled_like_pillow_reduce(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source = Image.open(FIXTURES / "grizzly_1.jpg").resize((1200, 900), Image.BICUBIC)
    path = save(source, tmp_path / "camera.webp", "WEBP", quality=90)
    libwebp = scaled_decoder()
    if libwebp is None:
        pytest.skip("libwebp is not reachable (Windows wheels link it statically)")
    calls = []
    monkeypatch.setattr(imaging, "scaled_decoder",
                        lambda: lambda *args: calls.append(args[1:]) or libwebp(*args))
    fast = decode(path, min_size=224)
    assert calls == [(300, 225)]  # libwebp did the decoding, straight at the reduced size
    pillow_only(monkeypatch)
    slow = decode(path, min_size=224)
    assert fast.mode == slow.mode == "RGB"
    assert fast.size == slow.size == (300, 225)  # reduced by 4, both sides still >= 224
    difference = np.abs(np.asarray(fast, dtype=int) - np.asarray(slow, dtype=int))
    assert difference.mean() < 1.5 and difference.max() < 40


def test_large_webp_with_alpha_is_flattened_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (1000, 1000), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (0, 0, 500, 1000))
    image = decode(save(rgba, tmp_path / "sticker.webp", "WEBP", lossless=True), min_size=224)
    assert image.mode == "RGB" and image.size == (250, 250)
    assert image.getpixel((60, 125)) == (200, 0, 0)
    assert image.getpixel((190, 125)) == (255, 255, 255)


def test_large_animated_webp_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (800, 800), c) for c in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / "anim.webp"
    frames[0].save(path, "WEBP", save_all=True, append_images=frames[1:], duration=100,
                   lossless=True)
    red, green, blue = decode(path, min_size=224).getpixel((32, 32))
    assert red > 200 and blue < 50


def test_truncated_large_webp(tmp_path: Path) -> None:
    path = save(photo((1200, 900)), tmp_path / "cut.webp", "WEBP", quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_one_line_error(path)


def test_fixtures_decode() -> None:
    for path in sorted(FIXTURES.glob("*.jpg")):
        image = decode(path)
        assert image.mode == "RGB" and min(image.size) > 0


def test_pillow_can_still_read_from_bytes_after_a_failure(tmp_path: Path) -> None:
    # A failed decode must not leave Pillow in a bad state (open files, changed limits).
    noise = tmp_path / "noise.png"
    noise.write_bytes(os.urandom(256))
    with pytest.raises(DecodeError):
        decode(noise)
    buffer = io.BytesIO()
    photo().save(buffer, "PNG")
    buffer.seek(0)
    assert Image.open(buffer).size == (320, 240)


# --- one reason per failure, in words; library chatter goes to the log file -----------------

def _encoded(fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    photo((300, 200)).save(buffer, fmt, **options)
    return buffer.getvalue()


def _flip_middle(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(255 - b for b in data[mid:mid + 64]) + data[mid + 64:]


def _dds_unimplemented() -> bytes:
    header = struct.pack("<7I", 124, 0x1 | 0x2 | 0x4 | 0x1000, 64, 64, 0, 0, 0) + b"\0" * 44
    pixel_format = struct.pack("<2I", 32, 0x4) + b"XYZW" + b"\0" * 20
    return b"DDS " + header + pixel_format + struct.pack("<4I", 0x1000, 0, 0, 0) + b"\0" * 4100


HOSTILE = {
    "trunc.png": (lambda: _encoded("PNG")[:600], "PNG truncated after"),
    "flip.png": (lambda: _flip_middle(_encoded("PNG")), "PNG"),
    "header.png": (lambda: (lambda d: d[:40] + b"\xff" * 40 + d[80:])(_encoded("PNG")),
                   "corrupt PNG: broken PNG file"),
    "trunc.jpg": (lambda: _encoded("JPEG")[:3000], "JPEG truncated after"),
    "flip.jpg": (lambda: _flip_middle(_encoded("JPEG")), "corrupt JPEG:"),
    "trunc.gif": (lambda: _encoded("GIF")[:2000], "GIF truncated after"),
    "trunc.bmp": (lambda: _encoded("BMP")[:9000], "BMP truncated after"),
    "flip.tif": (lambda: _flip_middle(_encoded("TIFF", compression="tiff_deflate")),
                 "corrupt TIFF: ZIPDecode: Decoding error"),
    "trunc.tif": (lambda: _encoded("TIFF", compression="tiff_lzw")[:15000], "corrupt TIFF:"),
    "trunc.webp": (lambda: _encoded("WEBP")[:40], "corrupt WEBP:"),
    "odd.dds": (_dds_unimplemented, "DDS variant not supported: Unimplemented pixel format"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_decoder_failure_is_one_line_naming_format_and_problem(tmp_path: Path,
                                                                      name: str) -> None:
    make, words = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(make())
    message = assert_one_line_error(path, words)
    assert "decoder error -2" not in message or "Decoding error" in message


def test_one_pixel_limit_quoted_the_same_below_and_above_twice_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    ours = save(photo((300, 200)), tmp_path / "a.png", "PNG")       # 1.2x: teddywatch refuses
    pillows = save(photo((400, 300)), tmp_path / "b.png", "PNG")    # 2.4x: Pillow refuses
    assert_one_line_error(ours, "image too large: 300×200 = 0.06 Mpx over the 0.05 Mpx limit")
    assert_one_line_error(pillows, "image too large: 0.12 Mpx over the 0.05 Mpx limit")
    assert imaging.max_pixels() == 50_000


def test_library_warnings_go_to_the_log_file_with_the_file_name(
        tmp_path: Path, user_env: dict[str, str]) -> None:
    from conftest import run_cli

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("flip.tif", "odd.dds", "trunc.tif"):
        (folder / (name + ".jpg")).write_bytes(HOSTILE[name][0]())  # named .jpg: bytes decide
    proc = run_cli("classify", str(folder), env=user_env)
    assert proc.returncode == 1
    # stderr holds only the closing report: one line per file, no library chatter
    lines = proc.stderr.splitlines()
    assert lines[0] == "error: 3 of 3 files could not be classified:", proc.stderr
    assert len(lines) == 4 and all(line.startswith("  ") for line in lines[1:]), proc.stderr
    assert "DDS variant not supported" in proc.stdout
    assert len(proc.stdout.splitlines()) == 1 + 3 + 1  # header, one row each, summary
    (log_file,) = Path(user_env["HOME"]).rglob("teddywatch.log")
    logged = log_file.read_text(encoding="utf-8")
    assert f"{folder / 'flip.tif.jpg'}: libtiff error: ZIPDecode: Decoding error" in logged
    assert f"{folder / 'trunc.tif.jpg'}: UserWarning: Corrupt EXIF data" in logged
