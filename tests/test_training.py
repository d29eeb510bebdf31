"""Training and export: a tiny resnet18 round-trips to ONNX + metadata; the bears head groups."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="training needs the [fastai] extra (torch)")
pytest.importorskip("fastai", reason="training needs the [fastai] extra (fastai)")

from PIL import Image  # noqa: E402

from teddywatch import training  # noqa: E402
from teddywatch.engines import ModelError, load_engine  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*.jpg"))
SCHEMA_KEYS = {"format", "name", "labels", "input", "output", "resize", "normalize",
               "unsure_threshold", "sha256", "learner_sha256", "arch", "fastai_version",
               "torch_version", "training", "scores"}


def _label(p: Path) -> str:
    return p.stem.split("_")[0]


def test_tiny_vision_learner_round_trips_through_export(tmp_path: Path) -> None:
    import torch
    from fastai.vision.all import ImageDataLoaders, Resize, resnet18, vision_learner

    torch.manual_seed(0)
    dls = ImageDataLoaders.from_lists(FIXTURES, FIXTURE_FILES, [_label(p) for p in FIXTURE_FILES],
                                      valid_pct=0.3, seed=0, item_tfms=Resize(64, method="squish"),
                                      bs=4, num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False)
    learn.fit(1, 1e-3)  # a couple of batches
    pkl = tmp_path / "export.pkl"
    learn.export(pkl)

    rep = training.export(pkl, None, check_images=FIXTURE_FILES[:4])
    assert rep.onnx == tmp_path / "export.onnx" and rep.onnx.is_file()
    assert not list(tmp_path.glob("*.data"))  # a single file, no external weights
    # The built-in check photos (3 + a camera-sized one) plus the four given, through teddywatch's
    # decoder vs learn.predict.
    assert rep.max_abs_diff <= 0.01 and rep.labels_agree and rep.checked_images == 4 + 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "export.onnx",
                                                          "export.pkl"]
    meta = json.loads(rep.metadata.read_text())
    assert SCHEMA_KEYS <= set(meta)
    assert meta["format"] == "teddywatch-model/1" and meta["output"] == "probabilities"
    assert meta["labels"] == [str(v) for v in dls.vocab]
    assert meta["input"]["size"] == [64, 64] and meta["input"]["layout"] == "NCHW"
    assert meta["resize"]["transform"] == "Resize" and meta["resize"]["method"] == "squish"
    # vision_learner adds ImageNet Normalize only for pretrained weights; none here.
    assert meta["normalize"] is None
    assert meta["sha256"] == hashlib.sha256(rep.onnx.read_bytes()).hexdigest()
    assert meta["learner_sha256"] == hashlib.sha256(pkl.read_bytes()).hexdigest()

    import onnx

    model = onnx.load(str(rep.onnx))
    assert model.opset_import[0].version >= 17
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param  # dynamic batch axis

    images = [Image.open(p).convert("RGB") for p in FIXTURE_FILES]
    fa = load_engine(pkl, "fastai")
    ox = load_engine(rep.onnx, "onnx")
    try:
        a, b = fa.predict(images), ox.predict(images)
        assert [p.label for p in a] == [p.label for p in b]
        assert max(abs(x.confidence - y.confidence) for x, y in zip(a, b)) < 1e-3
        assert fa.labels == ox.labels
    finally:
        fa.close()
        ox.close()


def test_train_writes_learner_onnx_metadata_and_reports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for p in FIXTURE_FILES:
        (data / _label(p)).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, data / _label(p) / p.name)
    rep = training.train(data, tmp_path / "out", arch="resnet18", epochs=1, holdout=0,
                         size=64, batch_size=4, valid_pct=0.3, freeze_epochs=1, progress=False)
    assert rep.learner.is_file() and rep.onnx.is_file() and rep.metadata.is_file()
    assert rep.confusion_png.stat().st_size > 0 and rep.top_losses_png.stat().st_size > 0
    assert rep.labels == ("black", "grizzly", "other", "teddy")
    assert 0 <= rep.valid_accuracy <= 1
    meta = json.loads(rep.metadata.read_text())
    assert meta["unsure_threshold"] == rep.unsure_threshold
    assert meta["training"]["epochs"] == 1 and "split" in meta["training"]
    assert meta["arch"] == "resnet18"


def test_user_mistakes_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        training.train(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    shutil.copy(FIXTURE_FILES[0], tmp_path / "one" / "cats")
    with pytest.raises(ModelError, match="at least two"):
        training.train(tmp_path / "one", tmp_path / "out")
    with pytest.raises(ModelError, match="unknown architecture"):
        training.train(FIXTURES, tmp_path / "out", arch="vgg16")
    with pytest.raises(ModelError, match="not found"):
        training.export(tmp_path / "missing.pkl")


def test_bear_split_is_stable() -> None:
    assert training.bear_split("2e26633d04ea.jpg") == "holdout"  # tests/fixtures/black_1.jpg
    names = [f"{i:012x}.jpg" for i in range(4000)]
    frac = sum(training.bear_split(n) == "holdout" for n in names) / len(names)
    assert 0.22 < frac < 0.28


def test_grouped_head_is_imagenet_probability_mass() -> None:
    import torch

    from teddywatch.training.bearnet import BearNet

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x

    net = BearNet(Fixed())
    z = torch.randn(3, 1000)
    p = torch.softmax(z, 1)
    q = torch.softmax(net(z), 1)
    assert torch.allclose(q[:, 0], p[:, 295] + p[:, 297], atol=1e-6)
    assert torch.allclose(q[:, 1], p[:, 294], atol=1e-6)
    assert torch.allclose(q[:, 2], p[:, 850], atol=1e-6)
    assert torch.allclose(q.sum(1), torch.ones(3), atol=1e-6)


def test_train_with_corrections_trains_on_the_users_examples_too(tmp_path: Path) -> None:
    """`teddywatch train --corrections`: the corrections' example pictures join the training
    side (never the held-out part), labelled as the user said."""
    data = tmp_path / "data"
    for p in FIXTURE_FILES:
        (data / _label(p)).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, data / _label(p) / p.name)
    example = tmp_path / "corrections" / "plush_example.jpg"
    example.parent.mkdir()
    shutil.copy(FIXTURES / "other_plush.jpg", example)
    kw = dict(arch="resnet18", epochs=1, holdout=0, size=64, batch_size=4, valid_pct=0.3,
              freeze_epochs=1, progress=False, export_onnx=False)
    plain = training.train(data, tmp_path / "plain", **kw)
    taught = training.train(data, tmp_path / "taught", corrections=[(example, "teddy")], **kw)
    assert taught.n_train + taught.n_valid == plain.n_train + plain.n_valid + 1


def test_train_corrections_without_any_says_so(tmp_path: Path, user_env) -> None:
    from conftest import run_cli

    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "b").mkdir()
    done = run_cli("train", str(tmp_path / "d"), "--corrections", env=user_env)
    assert done.returncode == 2
    assert "no corrections yet" in done.stderr and "Traceback" not in done.stderr
