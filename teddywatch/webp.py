"""Scaled WebP decoding through the libwebp that Pillow already ships.

Pillow decodes every WebP through libwebp's animation decoder: the full-size frame, as RGBA. For an
18-megapixel photo that is ~330 ms and ~70 MB before teddywatch shrinks it to ~500 px. libwebp
itself can scale while it decodes (`WebPDecoderOptions.use_scaling`): the same file comes out at
the reduced size in about a third of the time, and the full-size frame is never held in memory.

Pillow's wheels for Linux and macOS carry libwebp as a shared library, which is called here with
ctypes (which releases the GIL, so two decode threads run in parallel). Where it cannot be found or
its ABI differs (Windows wheels link it statically), `scaled_decoder()` returns None and callers use
Pillow as before.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
from pathlib import Path
from typing import Callable

from PIL import Image

log = logging.getLogger(__name__)

# From libwebp's src/webp/decode.h (ABI 0x0209, libwebp >= 0.5; unchanged through 1.6). libwebp
# refuses a config struct from another major ABI version, so a future layout change falls back
# to Pillow instead of corrupting memory.
_DECODER_ABI_VERSION = 0x0209
_MODE_RGB, _MODE_RGBA = 0, 1
_VP8_STATUS_OK = 0
_int, _u32, _size = ctypes.c_int, ctypes.c_uint32, ctypes.c_size_t


class _Features(ctypes.Structure):
    _fields_ = [("width", _int), ("height", _int), ("has_alpha", _int), ("has_animation", _int),
                ("format", _int), ("pad", _u32 * 5)]


class _RGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", _int), ("size", _size)]


class _YUVABuffer(ctypes.Structure):
    _fields_ = [("y", ctypes.c_void_p), ("u", ctypes.c_void_p), ("v", ctypes.c_void_p),
                ("a", ctypes.c_void_p), ("y_stride", _int), ("u_stride", _int),
                ("v_stride", _int), ("a_stride", _int), ("y_size", _size), ("u_size", _size),
                ("v_size", _size), ("a_size", _size)]


class _Buffers(ctypes.Union):
    _fields_ = [("RGBA", _RGBABuffer), ("YUVA", _YUVABuffer)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [("colorspace", _int), ("width", _int), ("height", _int),
                ("is_external_memory", _int), ("u", _Buffers), ("pad", _u32 * 4),
                ("private_memory", ctypes.c_void_p)]


class _Options(ctypes.Structure):
    _fields_ = [(name, _int) for name in (
        "bypass_filtering", "no_fancy_upsampling", "use_cropping", "crop_left", "crop_top",
        "crop_width", "crop_height", "use_scaling", "scaled_width", "scaled_height",
        "use_threads", "dithering_strength", "flip", "alpha_dithering_strength")] + [
        ("pad", _u32 * 5)]


class _Config(ctypes.Structure):
    _fields_ = [("input", _Features), ("output", _DecBuffer), ("options", _Options)]


ScaledDecoder = Callable[[bytes, int, int], "Image.Image | None"]


@functools.lru_cache(maxsize=1)
def scaled_decoder() -> ScaledDecoder | None:
    """`decode(data, width, height) -> an RGB (RGBA with alpha) image of that size`, or None.

    None means libwebp is not reachable here; the decode function itself returns None for a
    file libwebp will not decode (animations, corrupt data), and the caller falls back to Pillow.
    """
    lib = _load_libwebp()
    if lib is None:
        return None
    try:
        init = lib.WebPInitDecoderConfigInternal
        get_features = lib.WebPGetFeaturesInternal
        webp_decode = lib.WebPDecode
    except AttributeError:
        return None
    init.argtypes, init.restype = [ctypes.POINTER(_Config), _int], _int
    get_features.argtypes = [ctypes.c_char_p, _size, ctypes.POINTER(_Features), _int]
    get_features.restype = _int
    webp_decode.argtypes = [ctypes.c_char_p, _size, ctypes.POINTER(_Config)]
    webp_decode.restype = _int
    if not init(ctypes.byref(_Config()), _DECODER_ABI_VERSION):
        log.info("libwebp has another ABI; WebP files are decoded by Pillow at full size")
        return None

    def decode(data: bytes, width: int, height: int) -> Image.Image | None:
        config = _Config()
        if not init(ctypes.byref(config), _DECODER_ABI_VERSION):
            return None
        status = get_features(data, len(data), ctypes.byref(config.input), _DECODER_ABI_VERSION)
        if status != _VP8_STATUS_OK or config.input.has_animation:
            return None
        channels = 4 if config.input.has_alpha else 3
        pixels = bytearray(width * height * channels)
        config.options.use_scaling = 1
        config.options.scaled_width, config.options.scaled_height = width, height
        out = config.output
        out.colorspace = _MODE_RGBA if channels == 4 else _MODE_RGB
        out.is_external_memory = 1  # libwebp writes straight into `pixels`
        out.u.RGBA.rgba = ctypes.addressof((ctypes.c_char * len(pixels)).from_buffer(pixels))
        out.u.RGBA.stride = width * channels
        out.u.RGBA.size = len(pixels)
        if webp_decode(data, len(data), ctypes.byref(config)) != _VP8_STATUS_OK:
            return None
        mode = "RGBA" if channels == 4 else "RGB"
        return Image.frombytes(mode, (width, height), pixels)

    return decode


def _load_libwebp() -> ctypes.CDLL | None:
    for path in _candidates():
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        log.debug("large WebP photos are scaled while decoding by %s", path)
        return lib
    log.debug("libwebp not found; WebP photos are decoded by Pillow at full size")
    return None


def _candidates() -> list[Path]:
    """libwebp files to try: the one Pillow's WebP module has loaded, then the wheel's folders."""
    found: list[Path] = []
    try:
        from PIL import _webp  # noqa: F401 - loads Pillow's libwebp into this process
    except ImportError:
        return found
    maps = Path("/proc/self/maps")
    if maps.exists():  # Linux: whatever file the loader actually used (wheel or frozen bundle)
        for line in maps.read_text(errors="replace").splitlines():
            path = Path(line.split(maxsplit=5)[-1]) if "/" in line else None
            if path is not None and _is_libwebp(path.name) and path not in found:
                found.append(path)
    import PIL

    pil_dir = Path(PIL.__file__).parent
    for folder in (pil_dir.parent / "pillow.libs", pil_dir / ".dylibs"):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if _is_libwebp(p.name))
    if sys.platform == "win32":  # Pillow's Windows wheels link libwebp statically
        return []
    return found


def _is_libwebp(name: str) -> bool:
    # libwebp-51b0b3f7.so.7.2.0 (wheel), libwebp.so.7, libwebp.7.dylib; not libwebpdemux/mux.
    stem = name.split(".")[0]
    return stem == "libwebp" or stem.startswith("libwebp-")
