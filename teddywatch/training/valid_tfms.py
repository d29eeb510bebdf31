"""What a fast.ai learner does to an image at validation, as teddywatch's onnx engine serves it.

    served_pipeline(learn, path) -> ServedPipeline   (ModelError: something it cannot reproduce)
    verify(learn, pipeline, path)                    (ModelError: the reproduction differs)

`learn.predict` runs the validation pipeline: the item transforms on the PIL image (one `Resize`
or `RandomResizedCrop`, reproduced by the onnx engine's `Preprocess` in Pillow), then the batch
transforms on the tensor. At validation most batch transforms do nothing (fast.ai skips the
random ones, `split_idx = 0`), and the others reduce to:

* `IntToFloatTensor`: pixels / 255 (what `Preprocess` does);
* `Normalize`: (x - mean) / std;
* `AffineCoordTfm` (`aug_transforms`' Flip, Rotate, Zoom, Warp, combined into one): the identity
  affine map, sampled with `F.grid_sample` at its `size` (the batch's own size if None);
* `RandomResizedCropGPU` (`aug_transforms(size=224, min_scale=0.75)`, fastbook ch. 5's presizing):
  a centre crop to its ratio (the whole 460 px square), then the same `grid_sample` to its size.

fast.ai's `_grid_sample` first shrinks by `F.interpolate(mode="area")` when it downsamples more
than 2x (from 460 to 224 it does: 460 -> 448, then bilinear with align_corners=True to 224). Every
one of those steps is linear and acts on rows and columns separately, so the whole batch
transform is `rows @ image @ cols.T` per channel, with two fixed matrices computed here with
torch's own `grid_sample` and `adaptive_avg_pool1d` on unit vectors. They go into the ONNX graph
(two MatMuls, then Normalize, then the model); `verify` runs the learner's own `test_dl` on a random
image and requires the same tensor. Any other transform that acts at validation is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from teddywatch.engines import ModelError

#: Largest difference allowed between fast.ai's batch tensor and teddywatch's (after Normalize).
VERIFY_TOLERANCE = 1e-3
_RESAMPLES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_FASTAI = ("Serve the .pkl itself with engine = \"fastai\" ([model] path = the .pkl; needs the "
           "[fastai] extra), which runs the learner's own transforms")
# Item transforms with nothing to reproduce at validation (besides the one resize).
_ITEM_NOOPS = ("ToTensor",)
_BATCH_NOOPS = ("IntToFloatTensor",)


@dataclass
class ServedPipeline:
    """The learner's validation transforms in teddywatch's terms (sizes are (rows, columns))."""

    input_size: tuple[int, int]  # what Preprocess makes: the item resize's size
    output_size: tuple[int, int]  # what the model sees
    resize: dict  # the metadata's "resize" (Preprocess)
    normalize: dict | None  # mean/std, or None
    rows: np.ndarray | None = None  # (out_rows, in_rows): the batch resample, or None
    cols: np.ndarray | None = None  # (out_cols, in_cols)
    steps: list[str] = field(default_factory=list)  # what the batch transform does, in words

    @property
    def resamples(self) -> bool:
        return self.rows is not None


def _applies_at_validation(t: Any) -> bool:
    split = getattr(t, "split_idx", None)
    return split is None or split == 1


def _rows_cols(size: Any) -> tuple[int, int]:
    """fast.ai stores item sizes as (width, height) (`_process_sz`); return (rows, columns)."""
    if not hasattr(size, "__len__"):
        return int(size), int(size)
    return int(size[1]), int(size[0])


def _item_resize(learn: Any, path: Path) -> dict:
    from fastai.vision.all import RandomResizedCrop, Resize

    resizes, others = [], []
    for t in learn.dls.valid.after_item.fs:
        if isinstance(t, (Resize, RandomResizedCrop)):
            resizes.append(t)
        elif _applies_at_validation(t) and type(t).__name__ not in _ITEM_NOOPS:
            others.append(type(t).__name__)
    if not resizes:
        raise ModelError(f"{path}: this learner has no Resize or RandomResizedCrop item transform, "
                         "so images of different sizes cannot be batched the way it was trained; "
                         "retrain it with item_tfms=Resize(224) (or RandomResizedCrop) and export "
                         "again.")
    if len(resizes) > 1 or others:
        found = ", ".join([type(t).__name__ for t in resizes] + others)
        raise ModelError(f"{path}: this learner's item transforms at validation are {found}; "
                         "teddywatch's onnx engine reproduces one Resize or RandomResizedCrop "
                         f"only, so it would answer differently from learn.predict. {_FASTAI}, "
                         "or retrain with a single resize in item_tfms. Nothing was written.")
    t = resizes[0]
    rows, cols = _rows_cols(t.size)
    is_rrc = isinstance(t, RandomResizedCrop)
    resample = _RESAMPLES.get(int(getattr(t, "mode", 2)), "bilinear")
    return {"size": [rows, cols],
            "transform": "RandomResizedCrop" if is_rrc else "Resize",
            # RandomResizedCrop squishes to size + xtra at validation, then centre-crops.
            "method": "squish" if is_rrc else str(t.method),
            "pad_mode": str(getattr(t, "pad_mode", "reflection")),
            "val_xtra": float(getattr(t, "val_xtra", 0.0)) if is_rrc else 0.0,
            "resample": resample}


def served_pipeline(learn: Any, path: Path) -> ServedPipeline:
    """Read the learner's validation transforms; ModelError (one paragraph) if not reproducible."""
    from fastai.vision.all import AffineCoordTfm, Normalize, RandomResizedCropGPU

    resize = _item_resize(learn, path)
    size = tuple(resize.pop("size"))
    rows = np.eye(size[0])
    cols = np.eye(size[1])
    normalize, steps, unknown = None, [], []
    for t in learn.dls.valid.after_batch.fs:
        name = type(t).__name__
        if not _applies_at_validation(t) or name in _BATCH_NOOPS:
            continue
        if isinstance(t, Normalize) and normalize is None:
            normalize = {"mean": [round(float(v), 6) for v in t.mean.flatten()],
                         "std": [round(float(v), 6) for v in t.std.flatten()]}
        elif normalize is not None:
            unknown.append(f"{name} after Normalize")
        elif isinstance(t, AffineCoordTfm):
            out = tuple(t.cp_size) if t.cp_size is not None else (rows.shape[0], cols.shape[0])
            r, c = _grid_resample((rows.shape[0], cols.shape[0]), out, t.mode, str(t.pad_mode),
                                  t.align_corners)
            same = out == (rows.shape[0], cols.shape[0])
            rows, cols = r @ rows, c @ cols
            steps.append(f"{name} at validation: identity" +
                         ("" if same else f", sampled to {out[0]}x{out[1]}"))
        elif isinstance(t, RandomResizedCropGPU):
            r, c = _valid_crop(t, (rows.shape[0], cols.shape[0]))
            rows, cols = r @ rows, c @ cols
            out = tuple(int(s) for s in t.size)
            r, c = _grid_resample((rows.shape[0], cols.shape[0]), out, t.mode, "reflection", True)
            rows, cols = r @ rows, c @ cols
            steps.append(f"{name} at validation: centre crop, sampled to {out[0]}x{out[1]}")
        else:
            unknown.append(name)
    if unknown:
        raise ModelError(
            f"{path}: this learner's batch transforms do something at validation that "
            f"teddywatch's onnx engine cannot reproduce: {', '.join(unknown)}. It reproduces "
            "IntToFloatTensor, one Normalize, and aug_transforms' resizing (Flip/Rotate/Zoom/"
            f"Warp and RandomResizedCropGPU, which only resize at validation). {_FASTAI}. "
            "Nothing was written.")
    # grid_sample at the same size is the identity up to float32 rounding of its grid.
    identity = (rows.shape == (size[0], size[0]) and cols.shape == (size[1], size[1])
                and np.allclose(rows, np.eye(size[0]), atol=1e-4)
                and np.allclose(cols, np.eye(size[1]), atol=1e-4))
    out_size = (rows.shape[0], cols.shape[0])
    if identity:
        return ServedPipeline(size, size, resize, normalize, steps=steps)
    return ServedPipeline(size, out_size, resize, normalize, rows.astype(np.float32),
                          cols.astype(np.float32), steps)


def _valid_crop(t: Any, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """RandomResizedCropGPU.before_call at validation: a centre crop, as selection matrices."""
    h, w = size
    lo, hi = t.ratio
    if w / h < lo:
        cp = (int(w / lo), w)
    elif w / h > hi:
        cp = (h, int(h * hi))
    else:
        cp = (h, w)
    cp = (int(cp[0] * t.valid_scale), int(cp[1] * t.valid_scale))
    top, left = (h - cp[0]) // 2, (w - cp[1]) // 2
    return np.eye(h)[top:top + cp[0]], np.eye(w)[left:left + cp[1]]


def _grid_resample(size: tuple[int, int], out: tuple[int, int], mode: str, pad_mode: str,
                   align_corners: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """fast.ai's `_grid_sample` of an identity affine grid, as (rows, cols) matrices.

    Same steps as fastai.vision.augment._grid_sample: the grid from `F.affine_grid`, its zoom
    `z` and the resize `d`, `F.interpolate(mode="area")` first when it downsamples over 2x,
    then `F.grid_sample`. Each is applied to unit vectors, one axis at a time.
    """
    import torch
    import torch.nn.functional as F

    h, w = size
    theta = torch.eye(3)[:2].unsqueeze(0)
    coords = F.affine_grid(theta, [1, 1, *out], align_corners=align_corners)
    rows, cols = np.eye(h), np.eye(w)
    if mode == "bilinear":
        mn, mx = coords.min(), coords.max()
        z = 1 / (mx - mn).item() * 2
        d = min(h / out[0], w / out[1]) / 2
        if d > 1 and d > z:
            shrunk = F.interpolate(torch.zeros(1, 1, h, w), scale_factor=1 / d, mode="area",
                                   recompute_scale_factor=True).shape[-2:]
            rows = _area(h, int(shrunk[0])) @ rows
            cols = _area(w, int(shrunk[1])) @ cols
    ys = coords[0, :, 0, 1].double()
    xs = coords[0, 0, :, 0].double()
    rows = _sample(rows.shape[0], ys, mode, pad_mode, align_corners) @ rows
    cols = _sample(cols.shape[0], xs, mode, pad_mode, align_corners) @ cols
    return rows, cols


def _area(n_in: int, n_out: int) -> np.ndarray:
    """`F.interpolate(mode="area")` (adaptive average pooling) along one axis: (n_out, n_in)."""
    import torch
    import torch.nn.functional as F

    eye = torch.eye(n_in, dtype=torch.float64).unsqueeze(0)  # (1, n_in channels, n_in)
    return F.adaptive_avg_pool1d(eye, n_out)[0].T.numpy()


def _sample(n_in: int, positions: Any, mode: str, pad_mode: str,
            align_corners: bool | None) -> np.ndarray:
    """`F.grid_sample` at normalised `positions` along one axis: (len(positions), n_in)."""
    import torch
    import torch.nn.functional as F

    # Input: n_in channels, each a unit vector down a single column; the grid's other
    # coordinate is 0, which lands exactly on that column whatever align_corners says.
    eye = torch.eye(n_in, dtype=torch.float64).reshape(1, n_in, n_in, 1)
    grid = torch.zeros(1, len(positions), 1, 2, dtype=torch.float64)
    grid[0, :, 0, 1] = positions
    out = F.grid_sample(eye, grid, mode=mode, padding_mode=pad_mode,
                        align_corners=align_corners)
    return out[0, :, :, 0].T.numpy()


def verify(learn: Any, pipeline: ServedPipeline, path: Path) -> float:
    """Compare teddywatch's whole pipeline with the learner's own test_dl on a random image.

    teddywatch's side is the onnx engine's `Preprocess` (the item resize, in Pillow) and then
    `apply` (the batch side, as in the ONNX graph). Returns the largest difference; raises
    ModelError if it is over VERIFY_TOLERANCE.
    """
    import torch
    from fastai.vision.all import PILImage

    from teddywatch.engines.onnx import Preprocess

    rows, cols = pipeline.input_size
    pixels = np.random.default_rng(0).integers(0, 256, (rows * 3 // 2, cols * 5 // 4, 3),
                                                dtype=np.uint8)
    dl = learn.dls.test_dl([PILImage.create(pixels)], num_workers=0, bs=1)
    with torch.no_grad():
        (theirs,) = dl.one_batch()
    pre = Preprocess.from_metadata({"input": {"size": [rows, cols]}, "resize": pipeline.resize})
    item = np.array(pre.resize(Image.fromarray(pixels)))
    ours = apply(pipeline, torch.from_numpy(item).permute(2, 0, 1)[None].float() / 255)
    same_shape = theirs.shape == ours.shape
    diff = float((theirs.float() - ours).abs().max()) if same_shape else float("inf")
    if diff > VERIFY_TOLERANCE:
        shape = "x".join(str(s) for s in theirs.shape[-2:])
        steps = "; ".join(pipeline.steps) or "an item resize and Normalize"
        raise ModelError(
            f"{path}: teddywatch cannot reproduce this learner's transforms at validation "
            f"({steps}): on a test image fast.ai's tensor ({shape}) differs from teddywatch's "
            f"by {diff:.4g}. {_FASTAI}. Nothing was written.")
    return diff


def apply(pipeline: ServedPipeline, x: Any) -> Any:
    """The batch side of `pipeline` on a float NCHW tensor in 0..1 (what the ONNX graph does)."""
    import torch

    if pipeline.resamples:
        x = torch.from_numpy(pipeline.rows) @ x @ torch.from_numpy(pipeline.cols).T
    if pipeline.normalize is not None:
        mean = torch.tensor(pipeline.normalize["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(pipeline.normalize["std"]).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x
