"""What fast.ai does to a batch at validation, reproduced for the onnx engine or refused by name.

Each case builds real fast.ai DataLoaders (no model: only the transforms matter) and compares
`valid_tfms` with fast.ai's own `test_dl` tensor, which is what `learn.predict` feeds the model.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES
from teddywatch.engines import ModelError

fv = pytest.importorskip("fastai.vision.all", reason="needs the [fastai] extra")

from teddywatch.training.valid_tfms import apply, served_pipeline, verify  # noqa: E402

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class Sharpen(fv.Transform):
    """A batch transform of the user's own that acts at validation too."""

    order = 50

    def encodes(self, x: fv.TensorImage):  # noqa: ANN201
        return x * 1.1


class TrainOnlyNoise(fv.RandTransform):
    """Acts on the training set only (split_idx 0), like aug_transforms' lighting."""

    order = 50

    def encodes(self, x: fv.TensorImage):  # noqa: ANN201
        return x + 0.1


def learner_like(tmp_path: Path, item_tfms, batch_tfms) -> SimpleNamespace:  # noqa: ANN001
    for label in ("a", "b"):
        (tmp_path / label).mkdir(exist_ok=True)
        Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / label / "x.png")
    block = fv.DataBlock(blocks=(fv.ImageBlock, fv.CategoryBlock), get_items=fv.get_image_files,
                         get_y=fv.parent_label, splitter=fv.RandomSplitter(0.5, seed=0),
                         item_tfms=item_tfms, batch_tfms=batch_tfms)
    return SimpleNamespace(dls=block.dataloaders(tmp_path, bs=2, num_workers=0, device="cpu"))


def norm() -> list:
    return [fv.Normalize.from_stats(*IMAGENET)]


CASES = {
    # fastbook ch. 5: RandomResizedCropGPU crops the centre square and samples 460 -> 224, with
    # fast.ai's area pre-shrink (460 -> 448) since that is over 2x.
    "presizing": (lambda: fv.Resize(460),
                  lambda: [*fv.aug_transforms(size=224, min_scale=0.75), *norm()], (224, 224)),
    # aug_transforms(size=...) with min_scale 1: the affine transform itself samples to 224.
    "affine-size": (lambda: fv.Resize(512), lambda: fv.aug_transforms(size=224), (224, 224)),
    "affine-zeros-no-align": (
        lambda: fv.Resize(200),
        lambda: fv.aug_transforms(size=160, pad_mode="zeros", align_corners=False), (160, 160)),
    "non-square-crop-gpu": (lambda: fv.Resize(100),
                            lambda: fv.aug_transforms(size=(64, 96), min_scale=0.5), (64, 96)),
}


@pytest.mark.parametrize("case", CASES)
def test_batch_resizes_are_reproduced_as_fastai_does_them(case: str, tmp_path: Path) -> None:
    item, batch, out = CASES[case]
    learn = learner_like(tmp_path, item(), batch())
    pipeline = served_pipeline(learn, Path("x.pkl"))
    assert pipeline.resamples and pipeline.output_size == out
    assert verify(learn, pipeline, Path("x.pkl")) < 1e-3  # a random image, fast.ai's test_dl
    # And on a real photo resized by fast.ai's item transform: the tensor learn.predict uses.
    import torch

    photo = fv.PILImage.create(FIXTURES / "grizzly_1.jpg")
    (theirs,) = learn.dls.test_dl([photo], num_workers=0).one_batch()
    resized = learn.dls.valid.after_item.fs[0](photo, split_idx=1)
    ours = apply(pipeline, torch.from_numpy(np.array(resized)).permute(2, 0, 1)[None] / 255)
    assert ours.shape == theirs.shape and float((ours - theirs).abs().max()) < 1e-3


def test_aug_transforms_without_size_do_nothing_at_validation(tmp_path: Path) -> None:
    learn = learner_like(tmp_path, fv.Resize((128, 192)), [*fv.aug_transforms(), *norm(),
                                                           TrainOnlyNoise()])
    pipeline = served_pipeline(learn, Path("x.pkl"))
    # fast.ai stores item sizes as (width, height); the metadata's are (rows, columns).
    assert not pipeline.resamples and pipeline.input_size == pipeline.output_size == (128, 192)
    assert pipeline.normalize == {"mean": list(IMAGENET[0]), "std": list(IMAGENET[1])}
    assert verify(learn, pipeline, Path("x.pkl")) < 1e-3


def test_a_batch_transform_acting_at_validation_is_refused_by_name(tmp_path: Path) -> None:
    learn = learner_like(tmp_path, fv.Resize(64), [Sharpen(), *norm()])
    with pytest.raises(ModelError, match="cannot reproduce: Sharpen") as info:
        served_pipeline(learn, Path("x.pkl"))
    message = str(info.value)
    assert "engine = \"fastai\"" in message and "\n" not in message


def test_an_extra_item_transform_is_refused_by_name(tmp_path: Path) -> None:
    learn = learner_like(tmp_path, [fv.Resize(96), fv.CropPad(64)], norm())
    with pytest.raises(ModelError, match="Resize, CropPad") as info:
        served_pipeline(learn, Path("x.pkl"))
    assert "engine = \"fastai\"" in str(info.value)


def test_verify_notices_a_reproduction_that_differs(tmp_path: Path) -> None:
    learn = learner_like(tmp_path, fv.Resize(460),
                         [*fv.aug_transforms(size=224, min_scale=0.75), *norm()])
    pipeline = served_pipeline(learn, Path("x.pkl"))
    pipeline.cols = np.ascontiguousarray(pipeline.cols[::-1])  # mirrored: not what fast.ai does
    with pytest.raises(ModelError, match="differs from teddywatch's"):
        verify(learn, pipeline, Path("x.pkl"))
