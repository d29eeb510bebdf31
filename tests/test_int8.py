"""The int8 model (`make model`: teddywatch/training/quantize.py) says what the fp32 export says.

The fp32 model stays the one checked against fast.ai itself (test_engines.py); these tests tie
the quantised model to it: the same labels on every fixture, close probabilities, and metadata
that describes the same preprocessing with its own checksum. No timing here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
FP32 = ROOT / "models" / "bears.onnx"
INT8 = ROOT / "models" / "bears-int8.onnx"

pytestmark = pytest.mark.skipif(not (FP32.exists() and INT8.exists()),
                                reason="models/bears.onnx and models/bears-int8.onnx are needed")


@pytest.fixture(scope="module")
def predictions():
    from teddywatch.engines import load_engine
    from teddywatch.imaging import decode

    fp32, int8 = load_engine(FP32, "onnx"), load_engine(INT8, "onnx")
    files = sorted(FIXTURES.glob("*.jpg"))
    images = [decode(path, fp32.decode_size) for path in files]
    return files, fp32.predict(images), int8.predict(images)


def test_int8_gives_the_fp32_label_on_every_fixture(predictions) -> None:
    files, fp32, int8 = predictions
    assert len(files) >= 10
    for path, a, b in zip(files, fp32, int8):
        assert b.label == a.label, f"{path.name}: fp32 {a.label} {a.confidence:.3f}, int8 {b.top}"


def test_int8_probabilities_stay_close_to_fp32(predictions) -> None:
    _, fp32, int8 = predictions
    for a, b in zip(fp32, int8):
        pa, pb = dict(a.top), dict(b.top)
        assert set(pa) == set(pb)
        assert max(abs(pa[k] - pb[k]) for k in pa) < 0.2


def test_int8_batch_and_single_agree(predictions) -> None:
    from teddywatch.engines import load_engine
    from teddywatch.imaging import decode

    files, _, batched = predictions
    engine = load_engine(INT8, "onnx")
    for path, expected in zip(files[:3], batched):
        (single,) = engine.predict([decode(path, engine.decode_size)])
        assert single.label == expected.label
        assert abs(single.confidence - expected.confidence) < 1e-3


def test_int8_metadata_describes_the_same_model() -> None:
    fp32 = json.loads(FP32.with_suffix(".json").read_text())
    int8 = json.loads(INT8.with_suffix(".json").read_text())
    for key in ("format", "labels", "input", "output", "resize", "normalize", "unsure_threshold"):
        assert int8[key] == fp32[key], key
    assert int8["sha256"] == hashlib.sha256(INT8.read_bytes()).hexdigest()
    assert int8["fp32_sha256"] == fp32["sha256"], (
        "bears.onnx changed since bears-int8.onnx was made: run "
        "make model to rebuild and quantise the model")
    assert int8["quantization"]["format"] == "QDQ" and int8["quantization"]["per_channel"]
    # The judge (bench/model_quality.py) recorded int8 against fp32 on the held-out test split.
    test = int8["scores"]["test"]
    assert test["label_agreement_with_fp32"] >= 0.995
