"""Teaching the model: corrections, `learn` in the lean runtime, versions, undo, hot reload.

Everything real: the default model, the fixtures' photos, the CLI in a subprocess, a Service on a
real watched folder. The check pictures and anchors are the ones shipped beside the model.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from teddywatch import resources
from teddywatch.config import Config, LearnConfig, LogConfig, ModelConfig, NotifyConfig, \
    ServiceConfig, WatchConfig
from teddywatch.engines.onnx import OnnxEngine
from teddywatch.imaging import decode
from teddywatch.ledger import read_results
from teddywatch.results import CORRECTED
from teddywatch.service import Service
from teddywatch.teach.adapter import Adapter, FitSettings
from teddywatch.teach.corrections import CorrectionError, CorrectionStore
from teddywatch.teach.engine import LearnedEngine, with_learning
from teddywatch.teach.learn import learn
from teddywatch.teach.record import correct_file
from teddywatch.teach.versions import ModelVersions

from conftest import FIXTURES, answer_is_right, run_cli

MODEL = resources.default_model_path()
LABELS = ("black", "grizzly", "teddy", "other")
PLUSH = FIXTURES / "other_plush.jpg"  # a plush toy that is no teddy: the model says `other`


def near_copy(source: Path, target: Path) -> Path:
    """The same picture mirrored, 10% smaller and re-encoded: not the same bytes or pixels."""
    with Image.open(source) as image:
        copy = ImageOps.mirror(image).resize((image.width * 9 // 10, image.height * 9 // 10))
        copy.save(target, "JPEG", quality=80)
    return target


def classify_csv(*paths: Path, env: dict[str, str]) -> dict[str, dict[str, str]]:
    done = run_cli("classify", "--format", "csv", *map(str, paths), env=env)
    assert done.returncode == 0, done.stderr
    return {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(done.stdout))}


def results_log(env: dict[str, str]) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "teddywatch" / "results.csv"


# --- the CLI ----------------------------------------------------------------------------------

def test_correct_keeps_an_example_and_a_row_and_refuses_bad_requests_in_one_line(
        tmp_path: Path, user_env) -> None:
    picture = shutil.copy(PLUSH, tmp_path / "plush.jpg")
    done = run_cli("correct", str(picture), "teddy", env=user_env)
    assert done.returncode == 0, done.stderr
    assert "corrected to teddy" in done.stdout

    (row,) = list(read_results(results_log(user_env), corrections=True))
    assert (row.path, row.label, row.status, row.model) == (str(picture), "teddy", CORRECTED,
                                                            "user")
    assert list(read_results(results_log(user_env))) == []  # not a classification
    (correction,) = CorrectionStore().active()
    assert correction.label == "teddy" and correction.example.is_file()
    with Image.open(correction.example) as example:
        assert max(example.size) <= 512

    for args, said in ((("correct", str(picture), "bear"), "'bear' is not one of this model's "
                        "labels: black, grizzly, teddy, other"),
                       (("correct", str(tmp_path / "gone.jpg"), "teddy"), "no such file"),
                       (("correct", str(picture)), "give the right label")):
        refused = run_cli(*args, env=user_env)
        assert refused.returncode == 2
        assert said in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        assert "Traceback" not in refused.stderr

    undone = run_cli("correct", "--undo", str(picture), env=user_env)
    assert undone.returncode == 0, undone.stderr
    assert CorrectionStore().active() == []
    assert run_cli("correct", "--undo", str(picture), env=user_env).returncode == 2
    statuses = [r.status for r in read_results(results_log(user_env), corrections=True)]
    assert statuses == [CORRECTED, CORRECTED]  # appended, never rewritten


def test_learn_changes_the_corrected_picture_and_a_near_copy_keeps_the_rest_and_undo_restores(
        tmp_path: Path, user_env) -> None:
    near = near_copy(PLUSH, tmp_path / "plush_near.jpg")
    fixtures = sorted(FIXTURES.glob("*.jpg"))
    before = classify_csv(*fixtures, near, env=user_env)
    assert before["other_plush.jpg"]["label"] == "other"
    assert before["plush_near.jpg"]["label"] == "other"

    assert run_cli("correct", str(PLUSH), "teddy", env=user_env).returncode == 0
    learned = run_cli("learn", env=user_env)
    assert learned.returncode == 0, learned.stdout + learned.stderr
    assert "now classifying with bears-int8.onnx@" in learned.stdout
    assert "+v1" in learned.stdout

    after = classify_csv(*fixtures, near, env=user_env)
    assert after["other_plush.jpg"]["label"] == "teddy"
    assert after["plush_near.jpg"]["label"] == "teddy"
    for path in fixtures:
        if path != PLUSH:
            row = after[path.name]
            assert answer_is_right(path, row["label"], row["status"]), row
    assert {row["model"] for row in after.values()} == {before["black_1.jpg"]["model"] + "+v1"}

    undone = run_cli("learn", "--undo", env=user_env)
    assert undone.returncode == 0, undone.stderr
    again = classify_csv(*fixtures, near, env=user_env)
    assert {n: (r["label"], r["confidence"], r["model"]) for n, r in again.items()} == \
        {n: (r["label"], r["confidence"], r["model"]) for n, r in before.items()}
    assert run_cli("learn", "--undo", env=user_env).returncode == 2  # nothing left to undo


def test_learn_without_corrections_or_on_a_model_without_features_says_so(
        tmp_path: Path, user_env) -> None:
    nothing = run_cli("learn", env=user_env)
    assert nothing.returncode == 2
    assert "no corrections to learn from yet" in nothing.stderr

    old = tmp_path / "old.onnx"  # a model exported before models returned their features
    import onnx

    model = onnx.load(str(MODEL))
    del model.graph.output[1]
    onnx.save(model, str(old))
    shutil.copy(MODEL.with_suffix(".json"), old.with_suffix(".json"))
    config = tmp_path / "config.toml"
    config.write_text(f"[model]\npath = '{old}'\n", encoding="utf-8")
    assert run_cli("correct", str(PLUSH), "teddy", "--config", str(config),
                   env=user_env).returncode == 0
    refused = run_cli("learn", "--config", str(config), env=user_env)
    assert refused.returncode == 2
    assert "does not return its features" in refused.stderr
    assert "Traceback" not in refused.stderr


# --- in-process: the check, versions, the engine -------------------------------------------------

def test_a_version_worse_on_the_check_pictures_is_kept_but_not_used(home: Path) -> None:
    store = CorrectionStore()
    log_path = home / "results.csv"
    for name in ("black_1.jpg", "black_2.jpg", "grizzly_1.jpg", "grizzly_2.jpg", "teddy_1.jpg",
                 "teddy_2.jpg"):  # every bear is `other`: nothing a check can let through
        correct_file(str(FIXTURES / name), "other", log_path=log_path, labels=LABELS, store=store)
    report = learn(MODEL, store=store, settings=FitSettings(correction_weights=(10000.0,)))
    assert not report.used
    assert report.check is not None and not report.check.passed
    assert "fewer than the shipped model's" in report.lines()[-1]
    versions = ModelVersions(report.model)
    assert versions.versions() == [1] and versions.current() == 0


def test_corrections_with_a_label_the_model_lacks_are_refused() -> None:
    with pytest.raises(CorrectionError, match="'panda' is not one of this model's labels"):
        correct_file(str(PLUSH), "panda", log_path=Path("/nonexistent/results.csv"),
                     labels=LABELS, store=CorrectionStore(Path("/nonexistent")))


def test_learned_engine_serves_the_adapter_and_switches_between_batches(home: Path) -> None:
    base = OnnxEngine(MODEL)
    engine = with_learning(base)
    assert isinstance(engine, LearnedEngine) and engine.version == 0
    image = decode(PLUSH, engine.decode_size)
    shipped = engine.predict([image])[0]

    store = CorrectionStore()
    correct_file(str(PLUSH), "teddy", log_path=home / "results.csv", labels=LABELS, store=store)
    report = learn(MODEL, store=store, engine=base)
    assert report.used and report.version == 1
    learned = engine.predict([image])[0]  # the next batch sees the new version
    assert (learned.label, learned.model) == ("teddy", f"{base.model_id}+v1")

    adapter = Adapter.load(ModelVersions(base.model_id).path_of(1))
    probabilities, features = base.predict_arrays([image], features=True)
    expected = adapter.apply(probabilities, features)[0]
    assert learned.confidence == pytest.approx(float(expected.max()))

    ModelVersions(base.model_id).undo()
    back = engine.predict([image])[0]
    assert (back.label, back.model, back.confidence) == (shipped.label, shipped.model,
                                                         shipped.confidence)


# --- the service ------------------------------------------------------------------------------

def _config(tmp: Path, learn_config: LearnConfig = LearnConfig()) -> Config:
    return Config(watch=(WatchConfig(path=tmp / "inbox"),),
                  model=ModelConfig(path=MODEL, batch_size=4),
                  log=LogConfig(path=tmp / "data" / "results.csv"),
                  notify=NotifyConfig(enabled=False),
                  service=ServiceConfig(settle_seconds=0.2), learn=learn_config)


def _wait(predicate, timeout: float = 90.0, what: str = "") -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.usefixtures("no_leaked_threads")
def test_a_new_version_is_picked_up_mid_burst_losing_and_repeating_nothing(home: Path) -> None:
    store = CorrectionStore()
    correct_file(str(PLUSH), "teddy", log_path=home / "other.csv", labels=LABELS, store=store)
    report = learn(MODEL, store=store)
    versions = ModelVersions(report.model)
    versions.undo()  # made but not in use: the service starts on the shipped model
    assert versions.current() == 0

    config = _config(home)
    config.watch[0].path.mkdir()
    service = Service(config)
    service.start()
    try:
        names = []
        for i in range(80):
            source = sorted(FIXTURES.glob("*.jpg"))[i % 14]
            names.append(f"{i:03d}_{source.name}")
            shutil.copy(source, config.watch[0].path / names[-1])
            if i == 20:
                _wait(lambda: len(list(read_results(config.log.path))) >= 1, what="a first row")
                versions.use(report.version)  # `teddywatch learn` in another process
        _wait(lambda: len(list(read_results(config.log.path))) >= 80, what="80 rows")
    finally:
        service.stop()
    rows = list(read_results(config.log.path))
    assert sorted(Path(r.path).name for r in rows) == sorted(names)  # each once, none lost
    models = [r.model for r in rows]
    first_learned = models.index(f"{report.model}+v{report.version}")
    assert set(models[:first_learned]) == {report.model}
    assert set(models[first_learned:]) == {f"{report.model}+v{report.version}"}
    plush_rows = [r for r in rows[first_learned:] if r.path.endswith("other_plush.jpg")]
    assert plush_rows and all(r.label == "teddy" for r in plush_rows)


@pytest.mark.usefixtures("no_leaked_threads")
def test_the_service_learns_by_itself_after_enough_corrections(home: Path) -> None:
    config = _config(home, LearnConfig(auto=True, after=1))
    config.watch[0].path.mkdir()
    service = Service(config)
    service.start()
    try:
        shutil.copy(PLUSH, config.watch[0].path / "plush.jpg")
        _wait(lambda: len(list(read_results(config.log.path))) >= 1, what="the plush's row")
        service.correct(str(config.watch[0].path / "plush.jpg"), "teddy")
        (first,) = list(read_results(config.log.path))
        versions = ModelVersions(first.model)
        _wait(lambda: versions.current() == 1, what="the service to learn by itself")
        near_copy(PLUSH, config.watch[0].path / "plush_near.jpg")
        _wait(lambda: len(list(read_results(config.log.path))) >= 2, what="the near copy's row")
    finally:
        service.stop()
    near = [r for r in read_results(config.log.path) if r.path.endswith("plush_near.jpg")]
    assert [(r.label, r.model) for r in near] == [("teddy", f"{first.model}+v1")]
    assert np.isfinite(near[0].confidence)
