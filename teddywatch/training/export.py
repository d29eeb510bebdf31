"""Export a fast.ai learner to ONNX plus the metadata teddywatch's lean engine reads.

    export(learner_pkl, out=None, check_images=()) -> ExportReport  (ExportDisagrees: nothing written)

fastai and torch are imported inside the functions (the `[fastai]` extra).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from teddywatch.engines import ModelError, file_sha256
from teddywatch.engines.learner_kind import refuse_unservable
from teddywatch.training.export_check import check_export, default_images
from teddywatch.training.features_output import FEATURES_OUTPUT, add_features_output

METADATA_FORMAT = "teddywatch-model/1"


@dataclass
class ExportReport:
    onnx: Path
    metadata: Path
    labels: tuple[str, ...]
    max_abs_diff: float
    checked_images: int
    labels_agree: bool

# ----------------------------------------------------------------------------- export


def resize_spec(learn) -> dict:  # noqa: ANN001
    """How the learner resizes an image at inference, read from its item transforms."""
    from fastai.vision.all import RandomResizedCrop, Resize

    for t in learn.dls.after_item.fs:
        if isinstance(t, (Resize, RandomResizedCrop)):
            size = list(t.size) if hasattr(t.size, "__len__") else [t.size, t.size]
            is_rrc = isinstance(t, RandomResizedCrop)
            return {
                "size": [int(size[0]), int(size[1])],
                "transform": "RandomResizedCrop" if is_rrc else "Resize",
                # RandomResizedCrop squishes to size + xtra at validation, then centre-crops.
                "method": "squish" if is_rrc else str(t.method),
                "pad_mode": str(getattr(t, "pad_mode", "reflection")),
                "val_xtra": float(getattr(t, "val_xtra", 0.0)) if is_rrc else 0.0,
                "resample": "bilinear",
            }
    raise ModelError("this learner has no Resize or RandomResizedCrop item transform, so images "
                     "of different sizes cannot be batched the way it was trained; retrain it "
                     "with item_tfms=Resize(224) (or RandomResizedCrop) and export again.")


def normalize_spec(learn) -> dict | None:  # noqa: ANN001
    from fastai.vision.all import Normalize

    for t in learn.dls.after_batch.fs:
        if isinstance(t, Normalize):
            return {"mean": [round(float(v), 6) for v in t.mean.flatten()],
                    "std": [round(float(v), 6) for v in t.std.flatten()]}
    return None


class _WithActivation:  # built lazily so torch is imported only when exporting
    @staticmethod
    def make(model, act):  # noqa: ANN001, ANN205
        import torch

        class Probs(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x):  # noqa: ANN001, ANN202
                y = self.model(x)
                return act(y) if act is not None else torch.softmax(y, dim=1)

        return Probs().eval()


def load_learner_cpu(learner_pkl: Path, code: Sequence[Path] = ()):  # noqa: ANN201
    """load_learner on the CPU with teddywatch's error messages (see engines.fastai)."""
    from teddywatch.engines.fastai import load_learner_safely

    return load_learner_safely(Path(learner_pkl), code)


def export(learner_pkl: Path, out: Path | None = None, check_images: Sequence[Path] = (),
           code: Sequence[Path] = ()) -> ExportReport:
    """Export a fast.ai learner (`learn.export` .pkl) to ONNX plus teddywatch metadata JSON.

    The ONNX model takes NCHW float32 images (0..1, then normalised as the metadata says) with a
    dynamic batch axis and outputs softmax probabilities over the labels in order. The resize and
    normalisation in the metadata are read from the learner's own transforms. The files are
    written under hidden `.partial` names and renamed only when the export check passes
    (`export_check`: the built-in photos plus `check_images`, teddywatch's decoder + onnx engine
    against `learn.predict`); otherwise ExportDisagrees is raised and nothing is left behind.
    `code` lists Python files defining functions the learner was pickled with (see
    `teddywatch.engines.fastai`).
    """
    learner_pkl = Path(learner_pkl)
    out = Path(out) if out is not None else learner_pkl.with_suffix(".onnx")
    try:
        import torch
        import fastai
    except ImportError as e:
        raise ModelError(f"export needs fastai and torch ({e}). Install them with "
                         "pip install 'teddywatch[fastai]'.") from e
    if not learner_pkl.is_file():
        raise ModelError(f"{learner_pkl}: learner file not found. Give the .pkl written by "
                         "learn.export() or `teddywatch train`.")
    learn = load_learner_cpu(learner_pkl, code)
    refuse_unservable(learn, learner_pkl)
    labels = tuple(str(v) for v in learn.dls.vocab)
    rs = resize_spec(learn)
    size = rs.pop("size")
    norm = normalize_spec(learn)
    act = getattr(learn.loss_func, "activation", None)
    model = learn.model.eval().cpu()
    wrapped = _WithActivation.make(model, act)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written under names teddywatch never serves, renamed only once the check has passed.
    partial = out.with_name(f".{out.stem}.partial.onnx")
    partial_meta = partial.with_suffix(".json")
    try:
        input_name = _write_onnx(wrapped, size, partial)
        features = add_features_output(partial)  # what `teddywatch learn` fits on (teach/)
        info = getattr(learn, "teddywatch", None) or {}
        meta = {
            "format": METADATA_FORMAT,
            "name": info.get("name", learner_pkl.stem),
            "labels": list(labels),
            "input": {"size": size, "layout": "NCHW", "dtype": "float32", "name": input_name},
            "output": "probabilities",
            "features": {"output": FEATURES_OUTPUT, "size": features},
            "resize": rs,
            "normalize": norm,
            "unsure_threshold": info.get("unsure_threshold", 0.5),
            "sha256": file_sha256(partial),
            "learner_sha256": file_sha256(learner_pkl),
            "arch": info.get("arch", type(model).__name__),
            "fastai_version": fastai.__version__,
            "torch_version": torch.__version__,
            "training": info.get("training", {}),
            "scores": info.get("scores", {}),
        }
        partial_meta.write_text(json.dumps(meta, indent=1) + "\n")
        images = default_images() + [Path(p) for p in check_images]
        check = check_export(learn, learner_pkl, partial, images)
        meta["export_check"] = {"against": "learn.predict", "images": check.images,
                                "max_abs_diff": check.max_diff, "labels_agree": True}
        partial_meta.write_text(json.dumps(meta, indent=1) + "\n")
        meta_path = out.with_suffix(".json")
        os.replace(partial_meta, meta_path)
        os.replace(partial, out)
    finally:
        for leftover in (partial, partial_meta):
            leftover.unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {meta_path}; {check}")
    return ExportReport(out, meta_path, labels, check.max_diff, check.images, True)


def _write_onnx(wrapped, size: list[int], path: Path) -> str:  # noqa: ANN001
    """torch.onnx.export with a dynamic batch axis; checked by onnx; returns the input's name."""
    import warnings

    import onnx
    import torch

    dummy = torch.rand(2, 3, size[0], size[1])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (dummy,), str(path), input_names=["input"],
                          output_names=["probabilities"],
                          dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
                          opset_version=17, dynamo=False, external_data=False)
    onnx.checker.check_model(str(path))
    return "input"
