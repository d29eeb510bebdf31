"""The default model under both engines, on real fixture images."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO, answer_is_right, expected_label
from teddywatch.engines import ModelError, load_engine, pick_engine
from teddywatch.imaging import decode
from teddywatch.results import Job, FileId, OK
from teddywatch.worker import classify_batch

MODEL = REPO / "models" / "bears.onnx"
LEARNER = REPO / "models" / "bears.pkl"
FIXTURE_FILES = sorted(FIXTURES.glob("*.jpg"))


@pytest.fixture(scope="module")
def onnx_engine():
    engine = load_engine(MODEL, "auto")
    yield engine
    engine.close()


def test_auto_picks_by_file_type() -> None:
    assert pick_engine(Path("m.onnx")) == "onnx"
    assert pick_engine(Path("export.pkl")) == "fastai"
    with pytest.raises(ModelError, match="cannot tell which engine"):
        pick_engine(Path("model.bin"))


def test_onnx_engine_names_every_fixture(onnx_engine) -> None:
    assert onnx_engine.labels == ("black", "grizzly", "teddy", "other")
    images = [decode(p, onnx_engine.decode_size) for p in FIXTURE_FILES]
    predictions = onnx_engine.predict(images)
    threshold = onnx_engine.default_threshold
    for path, prediction in zip(FIXTURE_FILES, predictions):
        status = "ok" if prediction.confidence >= threshold else "unsure"
        assert answer_is_right(path, prediction.label, status), (path.name, prediction)
        assert abs(sum(p for _, p in prediction.top) - 1) < 1e-4


def test_onnx_engine_never_imports_torch() -> None:
    import subprocess

    code = ("import sys; from pathlib import Path; from teddywatch.engines import load_engine; "
            "from teddywatch.imaging import decode; "
            f"e = load_engine(Path({str(MODEL)!r})); "
            f"print(e.predict([decode({str(FIXTURE_FILES[0])!r})])[0].label); "
            "print('torch' in sys.modules, 'fastai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [expected_label(FIXTURE_FILES[0]), "False", "False"]


def test_batch_gives_one_result_per_file_even_with_bad_ones(onnx_engine, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    files = [FIXTURE_FILES[0], broken, FIXTURE_FILES[-1]]
    results = classify_batch(onnx_engine, [Job(FileId.of(p)) for p in files], threshold=0.5)
    assert [r.path for r in results] == [str(p.absolute()) for p in files]
    assert results[1].status == "error" and results[1].detail
    assert results[0].label == expected_label(files[0]) and results[0].status == OK
    assert all(r.model.startswith("bears.onnx@") for r in results)


def test_threshold_marks_unsure_but_keeps_the_label(onnx_engine) -> None:
    job = Job(FileId.of(FIXTURE_FILES[0]))
    (result,) = classify_batch(onnx_engine, [job], threshold=1.0)
    assert result.status == "unsure" and result.label == expected_label(FIXTURE_FILES[0])


def test_missing_metadata_is_explained(tmp_path: Path) -> None:
    lone = tmp_path / "lonely.onnx"
    shutil.copy(MODEL, lone)
    with pytest.raises(ModelError, match="no metadata file lonely.json"):
        load_engine(lone)


def test_broken_onnx_is_explained(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    shutil.copy(MODEL.with_suffix(".json"), bad.with_suffix(".json"))
    with pytest.raises(ModelError, match="onnxruntime cannot load this model"):
        load_engine(bad)


def test_metadata_records_what_the_model_card_promises() -> None:
    meta = json.loads(MODEL.with_suffix(".json").read_text())
    from teddywatch.engines import file_sha256

    assert meta["sha256"] == file_sha256(MODEL)
    assert meta["labels"] == ["black", "grizzly", "teddy", "other"]
    assert 0 < meta["unsure_threshold"] < 1
    assert meta["normalize"]["mean"] and meta["resize"]["transform"]


def test_engines_agree_on_every_fixture(onnx_engine) -> None:
    pytest.importorskip("fastai", reason="the fastai engine needs the [fastai] extra")
    fastai_engine = load_engine(LEARNER, "auto")
    images = [decode(p, onnx_engine.decode_size) for p in FIXTURE_FILES]
    ours = onnx_engine.predict(images)
    theirs = fastai_engine.predict(images)
    fastai_engine.close()
    for path, a, b in zip(FIXTURE_FILES, ours, theirs):
        assert a.label == b.label, path.name
        assert abs(a.confidence - b.confidence) < 0.01, (path.name, a.confidence, b.confidence)
