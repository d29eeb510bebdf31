"""A decoded image, of any mode or bit depth, reduced to what the model needs: 8-bit RGB, small.

Pillow decodes PNG, TIFF, GIF, BMP and HEIC files whole. What the model needs is far smaller: an
RGB image whose shorter side is at least the model's input size. `shrink` gets there right after
decoding, so nothing holds a full-size frame longer than its decode:

  * RGB and L images are reduced by 2, 4 or 8 with a box filter (`Image.reduce`), exactly as
    JPEG draft mode scales, then made RGB;
  * every other mode (RGBA, LA, P, I;16, I, F, CMYK, 1, ...) is made 8-bit RGB and reduced strip
    by strip: alpha flattened onto white, 16- and 32-bit greyscale scaled to 8 bits, palettes
    expanded. Each conversion is per pixel, so converting strips and then reducing them gives
    the same pixels as converting the whole image and reducing it, without a second full-size
    copy (a 6000×6000 RGBA PNG costs its 144 MB frame plus a 2 MB strip, not another 144 MB).
"""

from __future__ import annotations

from PIL import Image

#: Rows are converted in strips of about this many bytes (RGB, 4 bytes a pixel in Pillow).
STRIP_BYTES = 2 * 1024 * 1024
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def reduce_factor(size: tuple[int, int], min_size: int) -> int:
    """The largest of 8, 4, 2 that keeps both sides >= min_size (1 if none does)."""
    if min_size <= 0:
        return 1
    fit = min(size[0] // min_size, size[1] // min_size)
    return next((f for f in (8, 4, 2) if f <= fit), 1)


def frame_bytes(size: tuple[int, int], mode: str) -> int:
    """What Pillow holds for a decoded frame of this size and mode (RGB is 4 bytes a pixel)."""
    if mode in ("1", "L", "P"):
        per_pixel = 1
    elif mode.startswith("I;16"):
        per_pixel = 2
    else:
        per_pixel = 4
    return size[0] * size[1] * per_pixel


def shrink(image: Image.Image, min_size: int) -> Image.Image:
    """`image` (loaded) as RGB or L, reduced by 2, 4 or 8 keeping both sides >= min_size.

    The result keeps `info` (the EXIF orientation) and `format`. RGB and L images give exactly
    `image.reduce(factor)`; others `to_rgb(image).reduce(factor)`, computed strip by strip.
    """
    factor = reduce_factor(image.size, min_size)
    if factor == 1:
        return image
    if image.mode in ("RGB", "L"):
        reduced = image.reduce(factor)
    else:
        reduced = _reduce_in_strips(image, factor)
    reduced.info = image.info  # keep the EXIF orientation for exif_transpose
    reduced.format = image.format
    return reduced


def _reduce_in_strips(image: Image.Image, factor: int) -> Image.Image:
    width, height = image.size
    rows = max(1, STRIP_BYTES // (4 * width) // factor) * factor  # a multiple of the factor
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(top + rows, height)))
        out.paste(to_rgb(strip).reduce(factor), (0, top // factor))
    return out


def to_rgb(image: Image.Image) -> Image.Image:
    """Flatten alpha onto white (as a viewer shows it) and convert any mode to RGB."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in _WIDE_GREY:
        # 16-bit greyscale: scale to 8 bits instead of clipping to white (v // 256, clipped to
        # 0..255 by the conversion to L; in Pillow alone, so a decoder process needs no NumPy).
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image
