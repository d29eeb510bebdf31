"""One line, in words, for each way a decoder can fail: which format, and what is wrong with it.

"corrupt PNG: broken PNG file", "JPEG truncated after 11 KB", "DDS variant not supported:
Unimplemented pixel format 1465538904", "image too large: 30000×30000 = 900 Mpx over the 90 Mpx
limit". Every exception a decoder raises maps to such a line; none reaches the user as a
traceback (imaging logs the traceback of a surprising one at DEBUG, in the log file).
"""

from __future__ import annotations

import re
from typing import BinaryIO

from PIL import Image

#: File signatures, to name the format of a file Pillow could not even open.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"), (b"BM", "BMP"), (b"DDS ", "DDS"), (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"), (b"icns", "ICNS"), (b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"), (b"qoif", "QOI"),
)


def mpx(pixels: int) -> str:
    """Megapixels for people: 1,600, 900, 89.5, 0.05."""
    value = pixels / 1e6
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def too_large(pixels: int, limit: int, size: tuple[int, int] | None = None) -> str:
    """The one wording of the pixel limit, wherever an image is refused for it."""
    dims = f"{size[0]}×{size[1]} = " if size else ""
    return (f"image too large: {dims}{mpx(pixels)} Mpx over the {mpx(limit)} Mpx limit "
            "(decode.max_megapixels in the config)")


def bomb_reason(exc: Exception, limit: int) -> str:
    """Pillow's own refusal (over twice its limit) in the same words as ours."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return too_large(int(found.group(1)), limit) if found else too_large(0, limit)


def sniff_format(head: bytes) -> str | None:
    for magic, name in SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        return "HEIF/AVIF"
    return None


def open_failure(handle: BinaryIO, size: int) -> str:
    """Why Pillow could not open the file at all: a known format's broken header, or what the
    bytes look like."""
    try:
        handle.seek(0)
        head = handle.read(512)
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    fmt = sniff_format(head)
    if fmt is None:
        return f"not an image Pillow can read ({_looks_like(head)})"
    detail = _plugin_error(handle, fmt)
    return f"corrupt {fmt}: {detail}" if detail else f"corrupt {fmt}: its header cannot be read"


def load_failure(exc: BaseException, fmt: str | None, size: int, head: bytes = b"",
                 library_said: str = "") -> str:
    """Why decoding failed: `fmt` as Pillow named it, else as the first bytes show it;
    `library_said` is the decoding library's own message (libtiff's), when there is one."""
    fmt = fmt or sniff_format(head) or "image"
    text = first_line(exc)
    if isinstance(exc, NotImplementedError):
        return f"{fmt} variant not supported: {text}"
    if isinstance(exc, EOFError) or "truncated" in text or "not enough data" in text.lower():
        return f"{fmt} truncated after {_kb(size)}"
    code = re.fullmatch(r"decoder error (-?\d+)", text)
    if code:
        said = library_said or "its compressed data cannot be decoded"
        return f"corrupt {fmt}: {said} (decoder error {code[1]})"
    if isinstance(exc, (OSError, SyntaxError, ValueError)):
        return f"corrupt {fmt}: {text}"
    return f"corrupt {fmt}: {type(exc).__name__}: {text}"


def first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _kb(size: int) -> str:
    return f"{size} bytes" if size < 10_000 else f"{size // 1000:,} KB"


def _plugin_error(handle: BinaryIO, fmt: str) -> str:
    """The error the format's own Pillow plugin gives (Image.open hides it behind 'cannot
    identify image file')."""
    opener = Image.OPEN.get(fmt)
    if opener is None:
        return ""
    factory = opener[0]
    try:
        handle.seek(0)
        factory(handle, "").close()  # type: ignore[operator]
    except Exception as exc:  # whatever the plugin raises is the reason
        return first_line(exc)
    return ""


def _looks_like(head: bytes) -> str:
    if not head.strip():
        return "file holds only blank bytes"
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    if printable / len(head) > 0.95:
        return "looks like text"
    return f"unknown format, starts with bytes {head[:8].hex(' ')}"
