"""Export a fast.ai learner to ONNX plus the metadata teddywatch's lean engine reads.

    export(learner_pkl, out=None, check_images=()) -> ExportReport  (ExportDisagrees: no files)

fastai and torch are imported inside the functions (the `[fastai]` extra).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from teddywatch.engines import ModelError, file_sha256
from teddywatch.engines.learner_kind import refuse_unservable
from teddywatch.training.export_check import (MEASURE, camera_sized, check_export,
                                               default_images)
from teddywatch.training.valid_tfms import ServedPipeline, served_pipeline, verify
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



class _Served:  # built lazily so torch is imported only when exporting
    @staticmethod
    def make(model, act, pipeline: ServedPipeline):  # noqa: ANN001, ANN205
        """The learner's model behind its batch transforms (when they resample) and activation."""
        import torch

        from teddywatch.training.valid_tfms import apply

        class Served(torch.nn.Module):
            def forward(self, x):  # noqa: ANN001, ANN202
                if pipeline.resamples:  # the resample, then Normalize, as fast.ai orders them
                    x = apply(pipeline, x)
                y = self.model(x)
                return act(y) if act is not None else torch.softmax(y, dim=1)

        served = Served()
        served.model = model
        return served.eval()


def load_learner_cpu(learner_pkl: Path, code: Sequence[Path] = ()):  # noqa: ANN201
    """load_learner on the CPU with teddywatch's error messages (see engines.fastai)."""
    from teddywatch.engines.fastai import load_learner_safely

    return load_learner_safely(Path(learner_pkl), code)


def export(learner_pkl: Path, out: Path | None = None, check_images: Sequence[Path] = (),
           code: Sequence[Path] = (), decode_margin: float | None | str = MEASURE
           ) -> ExportReport:
    """Export a fast.ai learner (`learn.export` .pkl) to ONNX plus teddywatch metadata JSON.

    The ONNX model takes NCHW float32 images at the item resize's size (0..1, then normalised as
    the metadata says) with a dynamic batch axis and outputs softmax probabilities over the labels
    in order. The resize and normalisation are read from the learner's own transforms; a batch
    transform that resamples at validation (fastbook's presizing) is reproduced inside the graph
    (`valid_tfms`). The files are written under hidden `.partial` names and renamed only when the
    export check passes (`export_check`: the built-in photos, a camera-sized one and
    `check_images`, teddywatch's decoder + onnx engine against `learn.predict`); otherwise
    ExportDisagrees is raised and nothing is left behind. The check also measures how far the
    decoder may shrink photos for this model (`margin.py`), unless `decode_margin` gives it
    (measured elsewhere on real photos: the default model). `code` lists Python files defining
    functions the learner was pickled with (see `teddywatch.engines.fastai`).
    """
    learner_pkl = Path(learner_pkl)
    out = Path(out) if out is not None else learner_pkl.with_suffix(".onnx")
    try:
        import torch  # noqa: F401
        import fastai  # noqa: F401
    except ImportError as e:
        raise ModelError(f"export needs fastai and torch ({e}). Install them with "
                         "pip install 'teddywatch[fastai]'.") from e
    if not learner_pkl.is_file():
        raise ModelError(f"{learner_pkl}: learner file not found. Give the .pkl written by "
                         "learn.export() or `teddywatch train`.")
    learn = load_learner_cpu(learner_pkl, code)
    refuse_unservable(learn, learner_pkl)
    pipeline = served_pipeline(learn, learner_pkl)
    verify(learn, pipeline, learner_pkl)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written under names teddywatch never serves, renamed only once the check has passed.
    partial = out.with_name(f".{out.stem}.partial.onnx")
    partial_meta = partial.with_suffix(".json")
    try:
        meta = write_model(learn, learner_pkl, pipeline, partial)
        with tempfile.TemporaryDirectory(prefix="teddywatch-check-") as folder:
            images = [*default_images(), camera_sized(Path(folder)),
                      *(Path(p) for p in check_images)]
            check = check_export(learn, learner_pkl, partial, images, Path(folder),
                                 decode_margin)
        meta["export_check"] = {"against": "learn.predict", "images": check.images,
                                "max_abs_diff": check.max_diff, "labels_agree": True}
        # How far the decoder may shrink a photo for this model (imaging.decode_size): the
        # largest logit-gap change each margin tried caused (margin.py).
        meta["decode"] = {"margin": check.margin, "gap_changes": check.tried}
        partial_meta.write_text(json.dumps(meta, indent=1) + "\n")
        meta_path = out.with_suffix(".json")
        os.replace(partial_meta, meta_path)
        os.replace(partial, out)
    finally:
        for leftover in (partial, partial_meta):
            leftover.unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {meta_path}; {check}")
    return ExportReport(out, meta_path, tuple(meta["labels"]), check.max_diff, check.images, True)


def write_model(learn, learner_pkl: Path, pipeline: ServedPipeline,  # noqa: ANN001
                onnx_path: Path) -> dict:
    """Write `onnx_path` and its metadata `.json` beside it (no check); return the metadata."""
    import fastai
    import torch

    labels = [str(v) for v in learn.dls.vocab]
    act = getattr(learn.loss_func, "activation", None)
    model = learn.model.eval().cpu()
    input_name = _write_onnx(_Served.make(model, act, pipeline), list(pipeline.input_size),
                             onnx_path)
    features = add_features_output(onnx_path)  # what `teddywatch learn` fits on (teach/)
    info = getattr(learn, "teddywatch", None) or {}
    meta = {
        "format": METADATA_FORMAT,
        "name": info.get("name", Path(learner_pkl).stem),
        "labels": labels,
        "input": {"size": list(pipeline.input_size), "layout": "NCHW", "dtype": "float32",
                  "name": input_name},
        "output": "probabilities",
        "features": {"output": FEATURES_OUTPUT, "size": features},
        "resize": pipeline.resize,
        # With a batch resample, Normalize runs inside the graph after it, as in fast.ai.
        "normalize": None if pipeline.resamples else pipeline.normalize,
        "unsure_threshold": info.get("unsure_threshold", 0.5),
        "sha256": file_sha256(onnx_path),
        "learner_sha256": file_sha256(Path(learner_pkl)),
        "arch": info.get("arch", type(model).__name__),
        "fastai_version": fastai.__version__,
        "torch_version": torch.__version__,
        "training": info.get("training", {}),
        "scores": info.get("scores", {}),
    }
    if pipeline.resamples:
        meta["batch_transform"] = {"in_graph": True, "model_size": list(pipeline.output_size),
                                   "steps": pipeline.steps, "normalize": pipeline.normalize}
    onnx_path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


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
