"""The export check: the exported model, served the way teddywatch serves it, against `learn.predict`.

    check_export(learn, learner_pkl, onnx_path, images) -> ExportCheck  (raises ExportDisagrees)

teddywatch's side is the whole lean path on the file: its decoder (`imaging.decode`), then the onnx
engine (the metadata's resize and normalisation in NumPy, then onnxruntime). The learner's side is
`learn.predict(file)`: fast.ai's own decode and validation transforms. Agreement is the same label
on every image and every label's probability within TOLERANCE. The photos in
`teddywatch/checkimages/` are always checked (no EXIF orientation or transparency, which teddywatch
handles differently from `learn.predict` on purpose); `--check` files are added to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from teddywatch.engines import ModelError, load_engine
from teddywatch.imaging import DecodeError, decode

TOLERANCE = 0.01
CHECK_IMAGES = Path(__file__).resolve().parent.parent / "checkimages"


class ExportDisagrees(ModelError):
    """The exported model answers differently from the learner; nothing was written."""


@dataclass(frozen=True)
class ExportCheck:
    images: int
    max_diff: float  # largest difference of one label's probability, over labels and images
    worst_file: Path | None

    def __str__(self) -> str:
        return (f"checked against learn.predict on {self.images} images: same label on every "
                f"one, largest probability difference {self.max_diff:.4f} (tolerance "
                f"{TOLERANCE})")


def default_images() -> list[Path]:
    return sorted(CHECK_IMAGES.glob("*.jpg"))


def _learner_answer(learn: Any, path: Path) -> dict[str, float]:
    with learn.no_bar():
        _, _, probs = learn.predict(path)
    return {str(label): float(p) for label, p in zip(learn.dls.vocab, probs.tolist())}


def check_export(learn: Any, learner_pkl: Path, onnx_path: Path,
                 images: Sequence[Path]) -> ExportCheck:
    """Compare both answers on each image; raise ExportDisagrees (one paragraph) if they differ."""
    engine = load_engine(onnx_path, "onnx")  # refuses a model answering NaN
    worst: tuple[float, Path | None, str] = (0.0, None, "")
    try:
        for path in images:
            path = Path(path)
            try:
                image = decode(path, engine.decode_size)
            except DecodeError as exc:
                raise ModelError(f"{path}: this check image cannot be read ({exc}). Give photos "
                                 "teddywatch can classify to --check.") from None
            ours = engine.predict([image])[0]
            theirs = _learner_answer(learn, path)
            their_label = max(theirs, key=theirs.__getitem__)
            mine = dict(ours.top)
            diff = max(abs(theirs[k] - mine.get(k, 0.0)) for k in theirs)
            detail = (f"learn.predict says {their_label} ({theirs[their_label]:.1%}), the onnx "
                      f"engine {ours.label} ({ours.confidence:.1%})")
            if ours.label != their_label:
                diff = max(diff, 1.0)  # a different label is the worst disagreement
            if diff > worst[0] or worst[1] is None:
                worst = (diff, path, detail)
    finally:
        engine.close()
    diff, path, detail = worst
    if diff > TOLERANCE:
        shown = "a different label" if diff >= 1.0 else f"{diff:.4f}"
        raise ExportDisagrees(
            f"{learner_pkl}: the exported ONNX model does not answer as the learner does, so "
            f"nothing was written. On {path}, {detail}; largest difference {shown} (tolerance "
            f"{TOLERANCE}, {len(images)} images checked). teddywatch's onnx engine reproduces "
            "fast.ai's item Resize/RandomResizedCrop and one Normalize, not other batch "
            "transforms (aug_transforms(size=...), a custom transform): serve this learner "
            "with engine = \"fastai\" ([model] path = the .pkl), or retrain it with the size "
            "in item_tfms.")
    return ExportCheck(len(images), diff, path)
