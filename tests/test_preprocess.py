"""The ONNX engine's NumPy preprocessing equals fast.ai's own validation pipeline, pixel for pixel.

Each case builds real fast.ai DataLoaders with one item transform and ImageNet normalisation,
runs images of awkward shapes through `test_dl`, and compares the tensors with `Preprocess`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES
from teddywatch.engines.onnx import Preprocess

fastai_vision = pytest.importorskip("fastai.vision.all", reason="needs the [fastai] extra")

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def images() -> list[Image.Image]:
    """Real photos cut to wide, tall and tiny shapes, so crops, pads and upscales all happen."""
    base = Image.open(FIXTURES / "grizzly_1.jpg").convert("RGB")
    w, h = base.size
    return [base, base.crop((0, 0, w, h // 3)), base.crop((0, 0, w // 4, h)),
            base.resize((37, 23)), Image.open(FIXTURES / "other_cat.jpg").convert("RGB")]


def fastai_batch(item_tfm, tmp_path: Path) -> np.ndarray:
    fv = fastai_vision
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / label / "x.png")
    block = fv.DataBlock(blocks=(fv.ImageBlock, fv.CategoryBlock), get_items=fv.get_image_files,
                         get_y=fv.parent_label, splitter=fv.RandomSplitter(0.5, seed=0),
                         item_tfms=item_tfm, batch_tfms=fv.Normalize.from_stats(*IMAGENET))
    dls = block.dataloaders(tmp_path, bs=2, num_workers=0, device="cpu")
    test_dl = dls.test_dl([fv.PILImage.create(np.asarray(im)) for im in images()], bs=16)
    (batch,) = test_dl.one_batch()
    return batch.cpu().numpy()


CASES = {
    "resize-crop": (lambda fv: fv.Resize(224), dict(transform="Resize", method="crop")),
    "resize-squish": (lambda fv: fv.Resize(224, method="squish"),
                      dict(transform="Resize", method="squish")),
    "resize-pad-zeros": (lambda fv: fv.Resize(224, method="pad", pad_mode="zeros"),
                         dict(transform="Resize", method="pad", pad_mode="zeros")),
    "resize-pad-reflection": (lambda fv: fv.Resize(224, method="pad"),
                              dict(transform="Resize", method="pad", pad_mode="reflection")),
    "random-resized-crop": (lambda fv: fv.RandomResizedCrop(224, min_scale=0.5),
                            dict(transform="RandomResizedCrop", val_xtra=0.14)),
    "non-square-crop": (lambda fv: fv.Resize((160, 224)),
                        dict(transform="Resize", method="crop", height=160, width=224)),
}


@pytest.mark.parametrize("case", CASES)
def test_numpy_preprocessing_matches_fastai(case: str, tmp_path: Path) -> None:
    make_tfm, options = CASES[case]
    expected = fastai_batch(make_tfm(fastai_vision), tmp_path)
    shape = dict(width=224, height=224) | {k: options.pop(k) for k in ("width", "height")
                                          if k in options}
    pre = Preprocess(**shape, **options, mean=IMAGENET[0], std=IMAGENET[1])
    ours = np.empty_like(expected)
    for index, image in enumerate(images()):
        pre.to_array(image, ours[index])
    assert ours.shape == expected.shape
    # Both sides run the same Pillow calls; only float rounding may differ.
    assert np.abs(ours - expected).max() < 1e-4
