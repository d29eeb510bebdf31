"""Learners teddywatch cannot serve are refused in one paragraph, at export and by both engines.

Each learner is built here from the fixtures (resnet18, random weights, 128 px, no training: the
refusals depend on the learner's kind, not on how well it learnt).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [fastai] extra (torch)")
pytest.importorskip("fastai", reason="needs the [fastai] extra (fastai)")

from conftest import FIXTURES, run_cli  # noqa: E402
from teddywatch import training  # noqa: E402
from teddywatch.engines import ModelError, load_engine  # noqa: E402
from teddywatch.training.export_check import ExportCheck  # noqa: E402

FILES = sorted(FIXTURES.glob("*.jpg"))


def _learner(folder: Path, name: str, block, get_y) -> Path:  # noqa: ANN001
    import torch
    from fastai.vision.all import (DataBlock, ImageBlock, RandomSplitter, Resize, resnet18,
                                   vision_learner)

    torch.manual_seed(0)
    dblock = DataBlock(blocks=(ImageBlock, block), get_items=lambda _: FILES, get_y=get_y,
                       splitter=RandomSplitter(0.3, seed=0), item_tfms=Resize(128))
    learn = vision_learner(dblock.dataloaders(FIXTURES, bs=4, num_workers=0), resnet18,
                           pretrained=False)
    path = folder / f"{name}.pkl"
    learn.export(path)
    return path


# get_y functions carry no annotations: fastai casts their results to an annotated return type.
def _labels(p):  # noqa: ANN001, ANN202
    return p.stem.split("_")


def _number(p):  # noqa: ANN001, ANN202
    return float(len(p.stem))


def _point(p):  # noqa: ANN001, ANN202
    from fastai.vision.all import tensor

    return tensor([[10.0, 20.0]])


def _single(p):  # noqa: ANN001, ANN202
    return p.stem.split("_")[0]


def _kinds():  # noqa: ANN202
    from fastai.vision.all import MultiCategoryBlock, PointBlock, RegressionBlock

    return {"multi": (MultiCategoryBlock, _labels, "multi-label learner"),
            "regression": (RegressionBlock, _number, "regression learner"),
            "keypoints": (PointBlock, _point, "keypoint learner")}


@pytest.mark.parametrize("name", ["multi", "regression", "keypoints"])
def test_unservable_learners_are_refused_at_export_and_by_the_fastai_engine(
        tmp_path: Path, name: str) -> None:
    block, get_y, says = _kinds()[name]
    pkl = _learner(tmp_path, name, block, get_y)
    with pytest.raises(ModelError, match=says) as info:
        training.export(pkl)
    assert "\n" not in str(info.value) and "single-label" in str(info.value)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.json"))
    with pytest.raises(ModelError, match=says):
        load_engine(pkl, "fastai")


def test_export_of_a_keypoint_learner_is_one_paragraph_and_exit_2(
        tmp_path: Path, user_env: dict[str, str]) -> None:
    from fastai.vision.all import PointBlock

    pkl = _learner(tmp_path, "points", PointBlock, _point)
    # The pickle names this test module's _point (its get_y), so the CLI must import it.
    env = {**user_env, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                      user_env.get("PYTHONPATH", "")])}
    proc = run_cli("export", str(pkl), env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "keypoint learner" in proc.stderr and "Traceback" not in proc.stderr
    assert "AttributeError" not in proc.stderr and "vocab" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "points.pkl"]


def test_a_multi_label_onnx_exported_anyway_is_refused_by_the_onnx_engine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastai.vision.all import MultiCategoryBlock

    pkl = _learner(tmp_path, "multi", MultiCategoryBlock, _labels)
    # As an older teddywatch (or a hand-written .json) would have let it through.
    module = sys.modules["teddywatch.training.export"]  # the package re-exports a function
    monkeypatch.setattr(module, "refuse_unservable", lambda *a: None)
    monkeypatch.setattr(module, "check_export", lambda *a: ExportCheck(0, 0.0, None))
    rep = training.export(pkl)
    assert rep.onnx.is_file()
    with pytest.raises(ModelError, match="multi-label"):
        load_engine(rep.onnx, "onnx")


def test_a_model_answering_nan_is_refused_at_load_by_both_engines(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    import torch
    from fastai.learner import load_learner
    from onnx import numpy_helper

    from fastai.vision.all import CategoryBlock

    pkl = _learner(tmp_path, "good", CategoryBlock, _single)
    rep = training.export(pkl, tmp_path / "good.onnx")
    load_engine(rep.onnx, "onnx").close()  # the undamaged model loads

    model = onnx.load(str(rep.onnx))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(init).copy()
    weights[...] = np.nan
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    onnx.save(model, str(rep.onnx))
    with pytest.raises(ModelError, match="NaN or infinity"):
        load_engine(rep.onnx, "onnx")

    learn = load_learner(pkl, cpu=True)
    with torch.no_grad():
        next(learn.model.parameters()).fill_(float("inf"))
    learn.export(tmp_path / "damaged.pkl")
    with pytest.raises(ModelError, match="NaN or infinity"):
        load_engine(tmp_path / "damaged.pkl", "fastai")


def test_a_learner_pickled_by_fastai_2_7_says_which_fastai_to_use(tmp_path: Path) -> None:
    import fastcore.transform
    import torch

    class Pipeline:  # stands for fastcore 1.5's Pipeline, which fastai 2.7 learners pickle
        pass

    Pipeline.__module__, Pipeline.__qualname__ = "fastcore.transform", "Pipeline"
    fastcore.transform.Pipeline = Pipeline
    try:
        torch.save({"after_item": Pipeline()}, tmp_path / "old.pkl")
    finally:
        del fastcore.transform.Pipeline
    with pytest.raises(ModelError) as info:
        load_engine(tmp_path / "old.pkl", "fastai")
    message = str(info.value)
    assert "fastai 2.7 or older" in message and "fastai 2.8" in message
    assert "--code" not in message.replace("no --code file can supply them", "")
    with pytest.raises(ModelError, match="fastai 2.7 or older"):
        training.export(tmp_path / "old.pkl")
