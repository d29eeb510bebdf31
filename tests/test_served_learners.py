"""Learners served lean answer as `learn.predict` does, file by file: item resizes of every kind and
size, fastbook's presizing, and a camera-sized JPEG that the decoder shrinks in draft mode.

One resnet18 is trained once for the module (random init, a few batches on the fixtures); each case
puts that body behind DataLoaders with its own transforms (the network is fully convolutional, so it
runs at any size), exports it with `teddywatch export` and compares teddywatch's decoder + onnx
engine with `learn.predict` on the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch", reason="needs the [fastai] extra (torch)")
fv = pytest.importorskip("fastai.vision.all", reason="needs the [fastai] extra (fastai)")

from conftest import FIXTURES, run_cli  # noqa: E402
from teddywatch import training  # noqa: E402
from teddywatch.engines import ModelError, load_engine  # noqa: E402
from teddywatch.imaging import decode  # noqa: E402

FILES = sorted(FIXTURES.glob("*.jpg"))
TOLERANCE = 0.01


def _dls(item_tfms, batch_tfms=None):  # noqa: ANN001, ANN202
    return fv.ImageDataLoaders.from_lists(
        FIXTURES, FILES, [p.stem.split("_")[0] for p in FILES], valid_pct=0.3, seed=0,
        item_tfms=item_tfms, batch_tfms=batch_tfms, bs=4, num_workers=0)


@pytest.fixture(scope="module")
def body():  # noqa: ANN201
    """resnet18 weights trained for a few batches at 96 px, shared by every case."""
    import torch

    torch.manual_seed(0)
    learn = fv.vision_learner(_dls(fv.Resize(96)), fv.resnet18, pretrained=False)
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-3)
    return learn.model.state_dict()


@pytest.fixture(scope="module")
def camera_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4000x3000 JPEG (a fixture enlarged, with sensor-like grain): draft mode shrinks it."""
    big = Image.open(FIXTURES / "grizzly_1.jpg").convert("RGB").resize((4000, 3000),
                                                                       Image.BICUBIC)
    grain = np.random.default_rng(0).normal(0, 6, (3000, 4000, 1))
    pixels = np.clip(np.asarray(big, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("camera") / "camera.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def _export(folder: Path, body, item_tfms, batch_tfms, check: list[Path]):  # noqa: ANN001, ANN202
    learn = fv.vision_learner(_dls(item_tfms, batch_tfms), fv.resnet18, pretrained=False)
    learn.model.load_state_dict(body)
    pkl = folder / "export.pkl"
    learn.export(pkl)
    return learn, training.export(pkl, check_images=check)


def _same_answers(learn, onnx: Path, files: list[Path]) -> float:  # noqa: ANN001
    """Largest probability difference; fails on any label that differs."""
    engine = load_engine(onnx, "onnx")
    worst = 0.0
    try:
        for path in files:
            with learn.no_bar():
                _, _, probs = learn.predict(path)
            theirs = {str(v): float(p) for v, p in zip(learn.dls.vocab, probs)}
            (ours,) = engine.predict([decode(path, engine.decode_size)])
            assert ours.label == max(theirs, key=theirs.__getitem__), path
            worst = max(worst, max(abs(theirs[k] - v) for k, v in ours.top))
    finally:
        engine.close()
    assert worst <= TOLERANCE
    return worst


CASES = {  # name: (item_tfms, batch_tfms, metadata input size (rows, columns))
    "crop-64": (lambda: fv.Resize(64), lambda: None, [64, 64]),
    "crop-224": (lambda: fv.Resize(224), lambda: None, [224, 224]),
    "squish-80": (lambda: fv.Resize(80, method="squish"), lambda: None, [80, 80]),
    "pad-96-zeros": (lambda: fv.Resize(96, method="pad", pad_mode="zeros"), lambda: None,
                     [96, 96]),
    "non-square-128x192": (lambda: fv.Resize((128, 192)), lambda: None, [128, 192]),
    "random-resized-crop-72": (lambda: fv.RandomResizedCrop(72, min_scale=0.5), lambda: None,
                               [72, 72]),
}


@pytest.mark.parametrize("case", CASES)
def test_item_resizes_answer_as_learn_predict(case: str, body, camera_photo: Path,  # noqa: ANN001
                                              tmp_path: Path) -> None:
    item, batch, size = CASES[case]
    learn, rep = _export(tmp_path, body, item(), batch(), [camera_photo])
    meta = json.loads(rep.metadata.read_text())
    assert meta["input"]["size"] == size and "batch_transform" not in meta
    assert rep.checked_images == 4 + 1 and rep.max_abs_diff <= TOLERANCE
    _same_answers(learn, rep.onnx, [camera_photo, *FILES])


def test_fastbook_presizing_is_served_lean(body, camera_photo: Path,  # noqa: ANN001
                                           tmp_path: Path) -> None:
    batch = [*fv.aug_transforms(size=224, min_scale=0.75), fv.Normalize.from_stats(
        *fv.imagenet_stats)]
    learn, rep = _export(tmp_path, body, fv.Resize(460), batch, [camera_photo])
    meta = json.loads(rep.metadata.read_text())
    # Pillow makes the 460 px item; the graph samples it to 224 and normalises, as fast.ai does.
    assert meta["input"]["size"] == [460, 460] and meta["normalize"] is None
    assert meta["batch_transform"]["model_size"] == [224, 224]
    assert meta["batch_transform"]["normalize"]["std"] == [0.229, 0.224, 0.225]
    _same_answers(learn, rep.onnx, [camera_photo, *FILES])
    # The fastai engine decodes with the margin export measured (the .json beside the .pkl).
    fastai_engine, onnx_engine = load_engine(tmp_path / "export.pkl", "fastai"), \
        load_engine(rep.onnx, "onnx")
    assert fastai_engine.decode_size == onnx_engine.decode_size


class Sharpen(fv.Transform):
    """A batch transform of the user's own that acts at validation: the onnx engine cannot."""

    order = 50

    def encodes(self, x: fv.TensorImage):  # noqa: ANN201
        return x * 1.1


def test_a_batch_transform_it_cannot_reproduce_is_refused_with_exit_2(
        body, tmp_path: Path, user_env: dict[str, str]) -> None:  # noqa: ANN001
    learn = fv.vision_learner(_dls(fv.Resize(64), [Sharpen()]), fv.resnet18, pretrained=False)
    learn.model.load_state_dict(body)
    pkl = tmp_path / "export.pkl"
    learn.export(pkl)
    with pytest.raises(ModelError, match="cannot reproduce: Sharpen"):
        training.export(pkl)
    # The CLI: one paragraph, exit 2, nothing servable left behind. The pickle names this
    # module's Sharpen, so the CLI must be able to import it.
    env = {**user_env, "PYTHONPATH": f"{Path(__file__).parent}:{user_env.get('PYTHONPATH', '')}"}
    out = tmp_path / "served" / "m.onnx"
    proc = run_cli("export", str(pkl), "--out", str(out), env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if "Sharpen" in line]  # one paragraph
    assert line.startswith("error: ") and 'engine = "fastai"' in line
    assert "Traceback" not in proc.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.json"))
    # The fastai engine serves it, with the learner's own transforms.
    engine = load_engine(pkl, "fastai")
    try:
        assert engine.predict([Image.open(FILES[0]).convert("RGB")])[0].label in engine.labels
    finally:
        engine.close()
