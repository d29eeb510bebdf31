"""Check that the fastai and onnx engines give the same answers on the same decoded images.

`teddywatch export` runs this after writing the ONNX file: it exercises the whole lean path (the
NumPy preprocessing read from the metadata, then onnxruntime) against the learner itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from teddywatch.engines import load_engine
from teddywatch.imaging import DecodeError, decode

#: Largest confidence difference still called agreement (float rounding, Pillow vs fastai).
TOLERANCE = 0.01


@dataclass(frozen=True)
class Agreement:
    images: int
    same_label: int
    max_confidence_diff: float
    source: str  # "check images" or "synthetic test images"

    @property
    def ok(self) -> bool:
        return self.same_label == self.images and self.max_confidence_diff <= TOLERANCE

    def __str__(self) -> str:
        verdict = "agree" if self.ok else "DISAGREE"
        return (f"fastai and onnx engines {verdict} on {self.same_label} of {self.images} "
                f"{self.source} (largest confidence difference {self.max_confidence_diff:.4f}, "
                f"tolerance {TOLERANCE})")


def synthetic_images() -> list[Image.Image]:
    """Deterministic pictures of awkward shapes, so crops, pads and upscales are all exercised."""
    rng = np.random.default_rng(7)
    shapes = [(480, 320), (300, 520), (256, 256), (90, 60)]
    images = []
    for index, (w, h) in enumerate(shapes):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) % 64 * 4], axis=-1)
        noise = rng.integers(0, 40, size=(h, w, 3))
        images.append(Image.fromarray(np.clip(base + noise + index * 20, 0, 255).astype(np.uint8)))
    return images


def compare_engines(learner: Path, onnx_model: Path, image_paths: Sequence[Path] = (),
                    code: Sequence[Path] = ()) -> Agreement:
    """Run both engines on `image_paths` (or synthetic images) and compare their top results."""
    fastai_engine = load_engine(learner, "fastai", code=code)
    onnx_engine = load_engine(onnx_model, "onnx")
    try:
        size = max(fastai_engine.decode_size, onnx_engine.decode_size)
        images = []
        for path in image_paths:
            try:
                images.append(decode(path, size))
            except DecodeError:
                continue  # a bad check image says nothing about the engines
        source = "check images" if images else "synthetic test images"
        if not images:
            images = synthetic_images()
        theirs = fastai_engine.predict(images)
        ours = onnx_engine.predict(images)
    finally:
        fastai_engine.close()
        onnx_engine.close()
    same = sum(a.label == b.label for a, b in zip(theirs, ours))
    diff = max(abs(a.confidence - b.confidence) for a, b in zip(theirs, ours))
    return Agreement(len(images), same, diff, source)
