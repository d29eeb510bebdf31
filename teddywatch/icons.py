"""The tray icon, drawn with Pillow: a bear face with a badge that shows the service's state.

Drawn in code rather than shipped as files so every state, size and the .desktop PNG come from
one place. Shapes are drawn at 4x and scaled down, which is Pillow's cheapest anti-aliasing.
"""

from __future__ import annotations

import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

IDLE, WORKING, PAUSED, ERROR = "idle", "working", "paused", "error"
STATES = (IDLE, WORKING, PAUSED, ERROR)

_FUR = (139, 94, 60, 255)
_FUR_DULL = (120, 110, 104, 255)  # paused and error: a greyer bear reads as "not watching"
_MUZZLE = (222, 190, 150, 255)
_DARK = (40, 28, 22, 255)
_BADGE = {IDLE: (46, 160, 67), WORKING: (33, 118, 230), PAUSED: (120, 120, 120),
          ERROR: (212, 43, 43)}
_SCALE = 4


@lru_cache(maxsize=32)
def draw(state: str, size: int = 64) -> Image.Image:
    """The icon for `state` as a square RGBA image. Cached: the tray asks often, images are small."""
    if state not in STATES:
        raise ValueError(f"unknown icon state {state!r}; expected one of {', '.join(STATES)}")
    big = size * _SCALE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    _bear(pen, big, dull=state in (PAUSED, ERROR))
    _badge(pen, big, state)
    # Resize premultiplied, so fully transparent pixels do not bleed colour into the edges.
    small = image.convert("RGBa").resize((size, size), Image.Resampling.LANCZOS).convert("RGBA")
    # Pixels left nearly transparent become fully transparent black, for viewers that drop alpha.
    visible = small.getchannel("A").point(lambda a: 0 if a < 8 else 255)
    clean = Image.new("RGBA", small.size, (0, 0, 0, 0))
    clean.paste(small, mask=visible)
    return clean


def _box(cx: float, cy: float, r: float) -> tuple[float, float, float, float]:
    return (cx - r, cy - r, cx + r, cy + r)


def _bear(pen: ImageDraw.ImageDraw, s: int, dull: bool) -> None:
    fur = _FUR_DULL if dull else _FUR
    for ear_x in (0.22, 0.78):
        pen.ellipse(_box(s * ear_x, s * 0.24, s * 0.14), fill=fur)
        pen.ellipse(_box(s * ear_x, s * 0.24, s * 0.07), fill=_MUZZLE)
    pen.ellipse(_box(s * 0.5, s * 0.55, s * 0.38), fill=fur)
    pen.ellipse(_box(s * 0.5, s * 0.68, s * 0.17), fill=_MUZZLE)
    for eye_x in (0.36, 0.64):
        pen.ellipse(_box(s * eye_x, s * 0.47, s * 0.045), fill=_DARK)
    pen.ellipse((s * 0.43, s * 0.58, s * 0.57, s * 0.67), fill=_DARK)  # nose


def _badge(pen: ImageDraw.ImageDraw, s: int, state: str) -> None:
    """A disc in the lower right with a glyph, so the state is readable without colour too."""
    cx, cy, r = s * 0.76, s * 0.76, s * 0.22
    pen.ellipse(_box(cx, cy, r + s * 0.03), fill=(255, 255, 255, 255))
    pen.ellipse(_box(cx, cy, r), fill=_BADGE[state] + (255,))
    white = (255, 255, 255, 255)
    w = s * 0.045
    if state == IDLE:  # a tick
        pen.line([(cx - r * 0.5, cy), (cx - r * 0.1, cy + r * 0.4), (cx + r * 0.5, cy - r * 0.4)],
                 fill=white, width=int(w), joint="curve")
    elif state == WORKING:  # three dots: busy
        for dx in (-0.5, 0.0, 0.5):
            pen.ellipse(_box(cx + r * dx, cy, r * 0.16), fill=white)
    elif state == PAUSED:  # two bars
        for dx in (-0.25, 0.25):
            pen.rectangle((cx + r * dx - w * 0.6, cy - r * 0.45, cx + r * dx + w * 0.6,
                           cy + r * 0.45), fill=white)
    else:  # an exclamation mark
        pen.rectangle((cx - w * 0.6, cy - r * 0.6, cx + w * 0.6, cy + r * 0.15), fill=white)
        pen.ellipse(_box(cx, cy + r * 0.45, w * 0.7), fill=white)


def write_png(path: Path, state: str = IDLE, size: int = 256) -> Path:
    """Write the icon as a PNG (for the .desktop file and screenshots), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".icon-", suffix=".png")
    try:
        with os.fdopen(handle, "wb") as out:
            draw(state, size).save(out, "PNG")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    log.debug("wrote the %s icon to %s", state, path)
    return path
