"""Safe decoding of users' image files into RGB Pillow images.

Users' files are camera JPEGs of 20+ megapixels, WebP files named `.jpg`, PNGs with alpha,
animated GIFs, truncated downloads and the odd decompression bomb. `decode` turns each into an
upright RGB image no smaller than the model needs, or raises DecodeError with a one-line reason.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from teddywatch.files import NotAFile, open_regular
from teddywatch.heap import release_big_blocks
from teddywatch.jpeg import eighth_scale_scans
from teddywatch.libwarnings import decoding, last_libtiff_error
from teddywatch.pixelbudget import BUDGET, Budget
from teddywatch.reasons import bomb_reason, load_failure, open_failure, too_large
from teddywatch.shrink import frame_bytes, reduce_factor, shrink, to_rgb
from teddywatch.webp import scaled_decoder

log = logging.getLogger(__name__)

# Pillow's guard stays on: images over MAX_PIXELS are refused here with a clear reason
# (Pillow itself only warns between 1x and 2x the limit, and raises above 2x).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
Image.init()  # every format plugin, so reasons can name a broken file's format
release_big_blocks()  # a decoded frame's memory goes back to the system when it is freed

# HEIC/HEIF photos from phones (Pillow >= 11.3 reads AVIF by itself). pi-heif is the decode-only
# build of pillow-heif: the same libheif without the 20 MB GPL x265 encoder teddywatch never uses.
try:
    from pi_heif import register_heif_opener
except ImportError:  # pragma: no cover - depends on the installation
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        register_heif_opener = None
HEIF_SUPPORT = register_heif_opener is not None
if register_heif_opener is not None:
    register_heif_opener()


#: The smallest decode margin (see decode_size), and the one for models that record none.
#: 1.4 x 224 = 314 px still decodes every camera photo of 2,512 px and up at 1/8 scale.
DECODE_MARGIN = 1.4
#: A min_size larger than any image: nothing is reduced while decoding.
WHOLE_IMAGE = 1 << 30


def decode_size(model_side: int, margin: float | None = DECODE_MARGIN) -> int:
    """The `min_size` to decode with for a model whose input's longer side is `model_side`.

    JPEG draft mode, libwebp's scaled decoding and `shrink` reduce an image by 2, 4 or 8 before
    the model's resize, which fast.ai's `learn.predict` does from the full image. The reduction is
    allowed only while the decoded image keeps `margin` x the model's size (None: never). How much
    margin a model needs to answer within 0.01 of learn.predict depends on the model: measured by
    bench/decode_margin.py, the default model needs none (largest difference 0.0067 at any
    margin), models fine-tuned briefly need 2 to 8 or the whole image. `teddywatch export`
    measures each model on its check photos and records its margin (`export_check`).
    """
    return WHOLE_IMAGE if margin is None else math.ceil(margin * model_side)


class DecodeError(Exception):
    """The file is not an image we can read; str() is a one-line reason."""


def decode(path: str | os.PathLike[str], min_size: int = 224,
           budget: Budget = BUDGET) -> Image.Image:
    """Open `path` as an upright RGB image with both sides at least `min_size` where possible.

    JPEGs are decoded in draft mode (DCT scaling), so a 20-megapixel photo costs a fraction of a
    full decode (progressive ones from only the scans that scale reads, `teddywatch.jpeg`); still
    WebP photos are scaled by libwebp while it decodes (`teddywatch.webp`);
    other large images (PNG, TIFF, HEIC photos), whatever their mode or bit depth, are made
    8-bit RGB and shrunk the same way right after decoding (by 2, 4 or 8 with a box filter,
    `teddywatch.shrink`), so a batch never holds full-size photos. A full-size frame is decoded
    only once `budget` (`pixelbudget.BUDGET`; in a decoder process, its proxy) has room for it.
    The format is read from the file's bytes, never from its extension.
    """
    path = Path(path)
    try:
        handle = open_regular(path)  # never blocks: FIFOs, devices, folders, broken links
    except NotAFile as exc:
        raise DecodeError(str(exc)) from None
    with handle, decoding(path):
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise DecodeError("empty file (0 bytes)")
        state: dict[str, str] = {}
        held = [0]  # budget bytes granted; given back once the full-size frame is gone
        try:
            return _decode_open(handle, min_size, state, held, budget)
        except DecodeError:
            raise
        except Image.DecompressionBombError as exc:  # Pillow's own, over twice the limit
            raise DecodeError(bomb_reason(exc, max_pixels())) from None
        except UnidentifiedImageError:
            raise DecodeError(open_failure(handle, size)) from None
        except MemoryError:
            raise DecodeError("image too large to decode in memory") from None
        except Exception as exc:  # every decoder failure, NotImplementedError included
            if not isinstance(exc, (OSError, SyntaxError, ValueError, EOFError,
                                    NotImplementedError)):
                log.debug("%s: unexpected %s from the decoder", path, type(exc).__name__,
                          exc_info=True)
            raise DecodeError(load_failure(exc, state.get("format"), size, _head(handle),
                                           last_libtiff_error())) from None
        finally:
            budget.release(held[0])


def _decode_open(handle: BinaryIO, min_size: int, state: dict[str, str],
                 held: list[int], budget: Budget) -> Image.Image:
    with Image.open(handle) as image:
        state["format"] = image.format or ""
        _check_pixels(image)
        if image.format == "JPEG":
            full_size = image.size
            image.draft("RGB", (min_size, min_size))
            shortcut = _progressive_at_eighth(handle, image, full_size, min_size)
        elif image.format == "WEBP":
            shortcut = _scaled_webp(handle, image, min_size)
        else:
            shortcut = None
        if shortcut is not None:
            return to_rgb(ImageOps.exif_transpose(shortcut))
        held[0] = budget.acquire(frame_bytes(image.size, image.mode))
        image.load()
        reduced = shrink(image, min_size) if image.format != "JPEG" else image
        return to_rgb(ImageOps.exif_transpose(reduced))


#: Images are decoded on this many threads (Pillow releases the GIL while it decodes).
DECODE_THREADS = max(1, min(2, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def thread_pool() -> ThreadPoolExecutor:
    """The process-wide pool for decoding and preprocessing (created on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="teddywatch-decode")
        return _pool


def timed_decode(path: str | os.PathLike[str], min_size: int
                 ) -> tuple[Image.Image | BaseException, float]:
    """`decode` here and now: (image or exception, seconds)."""
    started = time.perf_counter()
    try:
        outcome: Image.Image | BaseException = decode(path, min_size)
    except Exception as exc:  # handed back to the caller, which decides per file
        outcome = exc
    return outcome, time.perf_counter() - started


def decode_all(paths: Sequence[str | os.PathLike[str]], min_size: int = 224
               ) -> Iterator[tuple[Image.Image | BaseException, float]]:
    """`decode` each path, in order, on the decode threads of this process: (image or
    exception, seconds), with no time limit (`teddywatch.decoders` decodes in processes that can
    be stopped, and falls back to this).

    A single path is decoded on the calling thread (no hand-off latency). Exceptions are
    returned, not raised, so one bad file never stops the others.
    """
    if len(paths) <= 1 or DECODE_THREADS == 1:
        for path in paths:
            yield timed_decode(path, min_size)
        return
    yield from thread_pool().map(timed_decode, paths, [min_size] * len(paths))


def _progressive_at_eighth(handle: BinaryIO, image: Image.Image, full_size: tuple[int, int],
                           min_size: int) -> Image.Image | None:
    """A progressive JPEG in draft mode at 1/8 scale, decoded from only the scans that scale
    reads (`teddywatch.jpeg`): the same pixels in about half the time. None: decode as usual."""
    if not image.info.get("progressive") or image.size != tuple(-(-s // 8) for s in full_size):
        return None
    reduced = eighth_scale_scans(_all_bytes(handle))
    if reduced is None:
        return None
    try:
        eighth = Image.open(io.BytesIO(reduced))
        eighth.draft("RGB", (min_size, min_size))
        eighth.load()
    except (OSError, SyntaxError, ValueError) as exc:  # then the whole file decides
        log.debug("%s: decoding the 1/8-scale scans failed (%s); decoding it all",
                  getattr(handle, "name", "image"), exc)
        return None
    if eighth.size != image.size or eighth.mode != image.mode:
        return None
    return eighth


def _scaled_webp(handle: BinaryIO, image: Image.Image, min_size: int) -> Image.Image | None:
    """A large still WebP decoded by libwebp straight at the reduced size, or None (use Pillow).

    Same output size as `shrink` (ceil(side / factor)); libwebp's area-averaging rescaler gives
    nearly the same pixels as Pillow's box reduce, without the full-size frame.
    """
    factor = reduce_factor(image.size, min_size)
    decoder = scaled_decoder() if factor > 1 else None
    if decoder is None or getattr(image, "n_frames", 1) > 1:
        return None
    width, height = (-(-side // factor) for side in image.size)
    scaled = decoder(_all_bytes(handle), width, height)
    if scaled is None:
        return None
    scaled.info = dict(image.info)  # the EXIF orientation, for exif_transpose
    scaled.format = image.format
    return scaled


def _all_bytes(handle: BinaryIO) -> bytes:
    """The whole file (for the decoding shortcuts, which return before Pillow reads on)."""
    handle.seek(0)
    return handle.read()


#: The most pixels an image may have; larger ones are refused before they are decoded.
#: Pillow's own guard (which raises only over twice its limit) is set to the same number.
MAX_PIXELS = 90_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def max_pixels() -> int:
    """The pixel limit in force (Pillow's setting, so both guards always agree)."""
    return Image.MAX_IMAGE_PIXELS or 0


def set_max_megapixels(megapixels: float) -> None:
    """Set the limit (`[decode] max_megapixels` in the config, validated there) for both guards."""
    Image.MAX_IMAGE_PIXELS = max(1, round(megapixels * 1_000_000))


def _check_pixels(image: Image.Image) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise DecodeError(f"image has no pixels ({width}x{height})")
    limit = max_pixels()
    if limit and width * height > limit:
        raise DecodeError(too_large(width * height, limit, (width, height)))


def _head(handle: BinaryIO) -> bytes:
    """The first bytes, to name the format of a file Pillow failed on while opening it."""
    try:
        handle.seek(0)
        return handle.read(64)
    except (OSError, ValueError):
        return b""
