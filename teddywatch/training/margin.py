"""How far teddywatch's decoder may shrink photos for a model: its decode margin, set at export.

    choose_margin(engine, images, work) -> MarginChoice

JPEG draft mode, libwebp's scaled decoding and `shrink` reduce a photo by 2, 4 or 8 before the
model's resize, as long as the result keeps `margin` x the model's input size
(`imaging.decode_size`). `learn.predict` resizes the whole photo. What is left between the two is
rounding: on a 37 MP photo shrunk by 2 for a 64 px model, at most one level on 11% of the
model's input pixels. Most models do not notice; some move by 0.15 and change labels, at any
margin (bench/decode_margin.py, README "Your own model"). So the margin is measured per model.

For each margin, fastest first, the onnx engine runs on the check images and on probes: photos
whose shorter side is exactly factor x ceil(margin x side), which the decoder shrinks by `factor`
(2: DCT scaling, 8: DC terms only) to exactly the margin, the worst case it allows. A probe is a
mosaic of the shipped photos at their own resolution (a real photo's fine detail, which an
enlarged photo lacks). Each photo decoded at the margin is compared with the same photo decoded
whole, in logits: softmax gives |dp| <= p (1 - p) x G <= G / 4, where G is the largest change of
a difference between two logits. G measures the model, not the photo's answer (a photo the model
is sure about hides it), so a margin is kept only if G <= GAP_LIMIT everywhere: at most 0.005 on
a probability of any photo perturbed as much, half the export check's tolerance. No margin
passing: whole images (slower on camera photos, never a different answer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from teddywatch.imaging import DECODE_MARGIN, decode, decode_size

CHECK_IMAGES = Path(__file__).resolve().parent.parent / "checkimages"
#: Margins tried, fastest first; none passing means whole images (margin None).
MARGINS = (DECODE_MARGIN, 2.0, 4.0, 8.0)
#: The largest change of a logit difference a margin may cause (|dp| <= GAP_LIMIT / 4).
GAP_LIMIT = 0.02
#: The reductions probed, and the largest probe made (pixels): larger ones are skipped.
FACTORS = (2, 8)
MAX_PIXELS = 24_000_000
_TILE = (192, 160)  # each shipped photo's centre, at its own resolution


@dataclass(frozen=True)
class MarginChoice:
    margin: float | None  # None: decode whole images
    gaps: dict[str, float] = field(default_factory=dict)  # margin tried -> largest G


def choose_margin(engine: Any, images: Sequence[Path], work: Path) -> MarginChoice:
    """The smallest margin of MARGINS whose G stays within GAP_LIMIT on `images` and its probes."""
    side = max(engine.preprocess.width, engine.preprocess.height)
    whole: dict[Path, np.ndarray] = {}
    gaps: dict[str, float] = {}
    for margin in MARGINS:
        worst = 0.0
        for path in [*images, *probes(work, side, margin)]:
            reduced = decode(path, decode_size(side, margin))
            with Image.open(path) as image:
                if reduced.size == image.size or reduced.size == image.size[::-1]:
                    continue  # not shrunk: the same pixels as learn.predict's
            if path not in whole:
                whole[path] = _logits(engine, decode(path, decode_size(side, None)))
            change = whole[path] - _logits(engine, reduced)
            worst = max(worst, float(change.max() - change.min()))
        gaps[f"{margin:g}"] = round(worst, 4)
        if worst <= GAP_LIMIT:
            return MarginChoice(margin, gaps)
    return MarginChoice(None, gaps)


def _logits(engine: Any, image: Image.Image) -> np.ndarray:
    """Log-probabilities (logits up to a constant) in the engine's label order."""
    (prediction,) = engine.predict([image])
    scores = dict(prediction.top)
    probs = np.array([scores[label] for label in engine.labels], dtype=np.float64)
    return np.log(np.clip(probs, 1e-30, 1.0))


def _tiles() -> list[Image.Image]:
    tiles = []
    for path in sorted(CHECK_IMAGES.glob("*.jpg")):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        w, h = rgb.size
        left, top = (w - _TILE[0]) // 2, (h - _TILE[1]) // 2
        tile = rgb.crop((left, top, left + _TILE[0], top + _TILE[1]))
        tiles += [tile, tile.transpose(Image.FLIP_LEFT_RIGHT)]
    return tiles


def mosaic(width: int, height: int) -> Image.Image:
    """A width x height RGB image tiled with the shipped photos' centres."""
    tiles = _tiles()
    out = Image.new("RGB", (width, height))
    cols, rows = -(-width // _TILE[0]), -(-height // _TILE[1])
    for row in range(rows):
        for col in range(cols):
            out.paste(tiles[(row * 5 + col * 3) % len(tiles)], (col * _TILE[0], row * _TILE[1]))
    return out


def probes(folder: Path, side: int, margin: float) -> list[Path]:
    """JPEGs in `folder` that the decoder shrinks to exactly `margin` x `side` (4:3, landscape)."""
    paths = []
    for factor in FACTORS:
        short = factor * math.ceil(margin * side)
        long = short * 4 // 3
        if short * long > MAX_PIXELS:
            continue
        path = Path(folder) / f"margin-{margin:g}-reduced-{factor}-{long}x{short}.jpg"
        if not path.exists():
            mosaic(long, short).save(path, quality=90)
        paths.append(path)
    return paths
