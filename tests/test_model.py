"""The fastai engine: the shipped bears learner on the fixtures, and known load failures."""

from __future__ import annotations

import json
import pathlib
import pickle
import sys
import types
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the fastai engine needs the [fastai] extra (torch)")
pytest.importorskip("fastai", reason="the fastai engine needs the [fastai] extra (fastai)")

from PIL import Image  # noqa: E402

from conftest import answer_is_right  # noqa: E402
from teddywatch.engines import ModelError, load_engine  # noqa: E402
from teddywatch.engines.fastai import FastaiEngine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LEARNER = REPO / "models" / "bears.pkl"
FIXTURE_FILES = sorted(p for p in FIXTURES.glob("*.jpg"))


def expected(p: Path) -> str:
    return p.stem.split("_")[0]


@pytest.fixture(scope="module")
def bears() -> FastaiEngine:
    if not LEARNER.exists():
        pytest.skip("models/bears.pkl not built (make model)")
    eng = load_engine(LEARNER, "fastai", threads=2)
    yield eng
    eng.close()


def test_bears_learner_names_every_fixture(bears: FastaiEngine) -> None:
    """Bears named right and sure; the cats, the dog, the raccoon, the plush toy, the person, the
    coffee and the drawing `other` or unsure (none of them trained on: tests/fixtures/README.md)."""
    images = [Image.open(p).convert("RGB") for p in FIXTURE_FILES]
    preds = bears.predict(images)
    assert len(preds) == len(images)
    assert {expected(p) for p in FIXTURE_FILES} == {"black", "grizzly", "teddy", "other"}
    assert {"other_cat2.jpg", "other_dog.jpg", "other_raccoon.jpg", "other_plush.jpg"} <= \
        {p.name for p in FIXTURE_FILES}
    wrong = {}
    for path, pr in zip(FIXTURE_FILES, preds):
        status = "ok" if pr.confidence >= bears.default_threshold else "unsure"
        if not answer_is_right(path, pr.label, status):
            wrong[path.name] = (pr.label, round(pr.confidence, 3))
    assert not wrong, wrong
    for pr in preds:
        assert [lab for lab, _ in pr.top][0] == pr.label
        assert abs(sum(prob for _, prob in pr.top) - 1) < 1e-4


def test_bears_learner_identity(bears: FastaiEngine) -> None:
    assert isinstance(bears, FastaiEngine)
    assert bears.labels == ("black", "grizzly", "teddy", "other")
    assert bears.model_id.startswith("bears.pkl@") and len(bears.model_id.split("@")[1]) == 8
    meta = json.loads(LEARNER.with_suffix(".json").read_text())
    assert bears.default_threshold == meta["unsure_threshold"]
    assert bears.decode_size >= 224
    assert bears.predict([]) == []
    # Grey and RGBA images are converted, batches keep their order.
    grey = Image.open(FIXTURES / "teddy_1.jpg").convert("L")
    rgba = Image.open(FIXTURES / "grizzly_1.jpg").convert("RGBA")
    assert [p.label for p in bears.predict([grey, rgba])] == ["teddy", "grizzly"]


# ----------------------------------------------------------------------------- load failures


@pytest.fixture(scope="module")
def tiny_dls():
    """DataLoaders over the fixtures at 64 px (fast), labels from the file names."""
    from fastai.vision.all import ImageDataLoaders, Resize

    return ImageDataLoaders.from_lists(FIXTURES, FIXTURE_FILES, [expected(p) for p in FIXTURE_FILES],
                                       valid_pct=0.3, seed=0, item_tfms=Resize(64), bs=4,
                                       num_workers=0)


def _tiny_learner(dls):
    from fastai.vision.all import resnet18, vision_learner

    return vision_learner(dls, resnet18, pretrained=False)


def test_label_function_from_the_notebook_needs_code(tiny_dls, tmp_path: Path) -> None:
    """A learner pickled with `__main__.is_cat` (as old fastai/pickle did) and how to load it."""
    from fastai.vision.all import DataBlock, ImageBlock, CategoryBlock, Resize, vision_learner
    from fastai.vision.all import resnet18

    main = sys.modules["__main__"]

    def is_cat(path):  # a labelling function defined in a notebook
        return Path(path).stem.split("_")[0]

    is_cat.__module__, is_cat.__qualname__ = "__main__", "is_cat"
    setattr(main, "is_cat", is_cat)
    try:
        dls = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=lambda _: FIXTURE_FILES,
                        get_y=is_cat, item_tfms=Resize(64)).dataloaders(FIXTURES, bs=4,
                                                                        num_workers=0)
        learn = vision_learner(dls, resnet18, pretrained=False)
        learn.dls.train.get_items = None
        pkl = tmp_path / "cats.pkl"
        learn.export(pkl, pickle_module=pickle)  # by reference, like learners from older fastai
    finally:
        delattr(main, "is_cat")

    with pytest.raises(ModelError) as err:
        FastaiEngine(pkl)
    msg = str(err.value)
    assert "'is_cat'" in msg and 'code = ["file.py"]' in msg and "--code" in msg
    assert "\n" not in msg and "Traceback" not in msg

    code = tmp_path / "labels.py"
    code.write_text("from pathlib import Path\n\n"
                    "def is_cat(path):\n    return Path(path).stem.split('_')[0]\n")
    try:
        eng = FastaiEngine(pkl, code=[code])
        assert len(eng.predict([Image.open(FIXTURES / "other_cat.jpg")])) == 1
        assert set(eng.labels) == {"black", "grizzly", "teddy", "other"}
    finally:
        if hasattr(main, "is_cat"):
            delattr(main, "is_cat")

    with pytest.raises(ModelError, match="code file not found"):
        FastaiEngine(pkl, code=[tmp_path / "missing.py"])


class _WindowsPathInPickle:
    """Pickles as `pathlib.WindowsPath('C:/...')`, as a learner exported on Windows does."""

    def __reduce__(self):
        return (pathlib.WindowsPath, ("C:\\Users\\me\\bears",))

    def __truediv__(self, other):  # learn.export() joins learn.path / fname
        return Path(other)


def test_learner_exported_on_windows_loads(tiny_dls, tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("WindowsPath loads natively on Windows")
    learn = _tiny_learner(tiny_dls)
    learn.path = _WindowsPathInPickle()
    pkl = tmp_path / "win.pkl"
    learn.export(Path(tmp_path) / "win.pkl")
    assert b"WindowsPath" in pkl.read_bytes()
    with pytest.raises(NotImplementedError):  # what plain load_learner does here
        import torch

        torch.load(pkl, weights_only=False)
    eng = FastaiEngine(pkl)
    assert len(eng.predict([Image.open(FIXTURES / "black_1.jpg")])) == 1
    assert pathlib.WindowsPath is not pathlib.PosixPath  # the alias was undone


def _pickle_naming(tmp_path: Path, module: str, name: str) -> Path:
    """A torch pickle that refers to `module.name`, which this installation does not have."""
    import torch

    fake = types.ModuleType(module)

    class Thing:
        pass

    Thing.__module__, Thing.__qualname__, Thing.__name__ = module, name, name
    setattr(fake, name, Thing)
    parent, _, child = module.rpartition(".")
    saved = sys.modules.get(module)
    sys.modules[module] = fake
    try:
        path = tmp_path / f"{name}.pkl"
        torch.save({"learner": Thing()}, path)
    finally:
        if saved is None:
            del sys.modules[module]
        else:
            sys.modules[module] = saved
    return path


def test_learner_from_a_newer_fastai_is_explained(tmp_path: Path) -> None:
    import fastai

    pkl = _pickle_naming(tmp_path, "fastai.vision.future_2099", "NewLearner")
    with pytest.raises(ModelError) as err:
        FastaiEngine(pkl)
    msg = str(err.value)
    assert f"fastai {fastai.__version__}" in msg and "torch" in msg and "version" in msg
    pkl = _pickle_naming(tmp_path, "fastai.learner", "LearnerFrom2099")
    with pytest.raises(ModelError, match=r"fastai .*different fastai/torch version"):
        FastaiEngine(pkl)


def test_missing_fastai_extra_is_explained(tmp_path: Path, monkeypatch) -> None:
    pkl = tmp_path / "export.pkl"
    pkl.write_bytes(b"not loaded")
    monkeypatch.setitem(sys.modules, "fastai.learner", None)
    with pytest.raises(ModelError, match=r"-m pip install -e '.*\[fastai\]'"):
        FastaiEngine(pkl)


def test_garbage_file_is_explained(tmp_path: Path) -> None:
    pkl = tmp_path / "export.pkl"
    pkl.write_bytes(b"\x00garbage, not a pickle" * 10)
    with pytest.raises(ModelError, match="not a fast.ai learner"):
        load_engine(pkl)
