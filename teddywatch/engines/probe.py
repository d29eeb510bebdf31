"""A load-time check that a model's answers are numbers at all: one small built-in image, once.

A learner or ONNX file with damaged weights (NaN or infinite) loads without complaint and then
answers `nan%` for every picture. Both engines call `check_outputs(engine, path)` at the end of
loading, so such a model is refused with one paragraph before it classifies anything. The probe
image is drawn in memory (a 64 x 48 gradient), so the check costs one tiny inference.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from teddywatch.engines import ModelError

#: Probabilities over all labels must sum to 1 within this (softmax in float32).
SUM_TOLERANCE = 1e-3


def probe_image() -> Image.Image:
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def check_outputs(engine: Any, path: Path) -> None:
    """Run `engine` on the probe image; raise ModelError if its scores are not probabilities."""
    (prediction,) = engine.predict([probe_image()])
    scores = [score for _, score in prediction.top]
    if not all(math.isfinite(s) for s in scores):
        raise ModelError(
            f"{path}: the model answers NaN or infinity on a test image, so every result would "
            "be meaningless (nan%). Its weights are probably damaged (a training run that "
            "diverged, or a truncated file). Retrain or re-export it, then check it with "
            "learn.predict before serving it.")
    total = sum(scores)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ModelError(
            f"{path}: the model's scores on a test image add up to {total:.3f}, not 1, so they "
            "are not one-label probabilities: it looks like a multi-label model (sigmoid "
            "outputs), which teddywatch does not serve. Use a single-label classifier "
            "(CategoryBlock) exported with 'teddywatch export'.")
