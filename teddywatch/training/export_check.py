"""The export check: the exported model, served as teddywatch serves it, against `learn.predict`.

    check_export(learn, learner_pkl, onnx_path, images, work) -> ExportCheck  (ExportDisagrees)

teddywatch's side is the whole lean path on the file: its decoder (`imaging.decode`), then the onnx
engine (the metadata's resize and normalisation in NumPy, then onnxruntime). The learner's side is
`learn.predict(file)`: fast.ai's own decode and validation transforms. Agreement is the same label
on every image and every label's probability within TOLERANCE. The photos in
`teddywatch/checkimages/` are always checked (no EXIF orientation or transparency, which teddywatch
handles differently from `learn.predict` on purpose), and so is a camera-sized JPEG made from one
of them (`camera_sized`); `--check` files are added to them.

Whole images are checked first (learn.predict's own pixels); then the check picks how far
teddywatch's decoder may shrink photos for this model (its decode margin, `margin.py`) and checks
the images again at that margin. Sensitive models get a larger margin or whole images (slower on
camera photos, never a different answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from teddywatch.engines import ModelError, load_engine
from teddywatch.imaging import DECODE_MARGIN, DecodeError, decode, decode_size
from teddywatch.training.margin import CHECK_IMAGES, MarginChoice, choose_margin

TOLERANCE = 0.01
#: check_export's default: measure the model's decode margin (`margin.choose_margin`).
MEASURE = "measure"


class ExportDisagrees(ModelError):
    """The exported model answers differently from the learner; nothing was written."""


@dataclass(frozen=True)
class ExportCheck:
    images: int
    max_diff: float  # largest difference of one label's probability, over labels and images
    worst_file: Path | None
    margin: float | None = DECODE_MARGIN  # the decode margin chosen; None: whole images
    tried: dict[str, float] = field(default_factory=dict)  # margin -> largest logit-gap change

    def __str__(self) -> str:
        how = ("whole (this model notices the rounding a shrunk decode leaves)"
               if self.margin is None else f"to at least {self.margin:g}x the model's size")
        return (f"checked against learn.predict on {self.images} images: same label on every "
                f"one, largest probability difference {self.max_diff:.4f} (tolerance "
                f"{TOLERANCE}); photos will be decoded {how}")


def default_images() -> list[Path]:
    return sorted(CHECK_IMAGES.glob("*.jpg"))


def camera_sized(folder: Path) -> Path:
    """A 4000 x 3000 JPEG in `folder`: a shipped photo enlarged, with a fixed sensor-like grain.

    Camera photos are where teddywatch's decoder and fast.ai's part ways most (draft mode at 1/8
    scale); this puts one in every check without shipping megabytes.
    """
    import numpy as np
    from PIL import Image

    with Image.open(CHECK_IMAGES / "coffee.jpg") as small:
        big = small.convert("RGB").resize((4000, 3000), Image.BICUBIC)
    grain = np.random.default_rng(0).normal(0, 6, (3000, 4000, 1)).astype(np.float32)
    pixels = np.clip(np.asarray(big, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    path = Path(folder) / "camera-sized-4000x3000.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def _learner_answer(learn: Any, path: Path) -> dict[str, float]:
    with learn.no_bar():
        _, _, probs = learn.predict(path)
    return {str(label): float(p) for label, p in zip(learn.dls.vocab, probs.tolist())}


@dataclass(frozen=True)
class _Worst:
    diff: float  # largest probability difference; 1.0 or more for a different label
    path: Path | None
    detail: str


def _compare(engine: Any, paths: Sequence[Path], answers: list[dict[str, float]],
             size: int) -> _Worst:
    """The onnx engine on each file decoded with `size`, against learn.predict's answers."""
    worst = _Worst(-1.0, None, "")
    for path, theirs in zip(paths, answers):
        try:
            image = decode(path, size)
        except DecodeError as exc:
            raise ModelError(f"{path}: this check image cannot be read ({exc}). Give photos "
                             "teddywatch can classify to --check.") from None
        ours = engine.predict([image])[0]
        their_label = max(theirs, key=theirs.__getitem__)
        mine = dict(ours.top)
        diff = max(abs(theirs[k] - mine.get(k, 0.0)) for k in theirs)
        if ours.label != their_label:
            diff = max(diff, 1.0)  # a different label is the worst disagreement
        if diff > worst.diff:
            worst = _Worst(diff, path, f"learn.predict says {their_label} "
                                       f"({theirs[their_label]:.1%}), the onnx engine "
                                       f"{ours.label} ({ours.confidence:.1%})")
    return worst


def check_export(learn: Any, learner_pkl: Path, onnx_path: Path, images: Sequence[Path],
                 work: Path, margin: float | None | str = MEASURE) -> ExportCheck:
    """Check the export on whole images, then pick its decode margin (`margin.choose_margin`) or
    take the one given, and check that too; ExportDisagrees (one paragraph) if either differs.

    Whole images give learn.predict's own pixels, so a model that disagrees there is refused.
    """
    engine = load_engine(onnx_path, "onnx")  # refuses a model answering NaN
    paths = [Path(p) for p in images]
    side = max(engine.preprocess.width, engine.preprocess.height)
    try:
        answers = [_learner_answer(learn, path) for path in paths]
        worst = _compare(engine, paths, answers, decode_size(side, None))
        if worst.diff <= TOLERANCE:
            choice = (choose_margin(engine, paths, work) if margin == MEASURE
                      else MarginChoice(margin))  # type: ignore[arg-type]
            if choice.margin is not None:
                worst = _compare(engine, paths, answers, decode_size(side, choice.margin))
    finally:
        engine.close()
    if worst.diff <= TOLERANCE:
        return ExportCheck(len(paths), worst.diff, worst.path, choice.margin, choice.gaps)
    shown = "a different label" if worst.diff >= 1.0 else f"{worst.diff:.4f}"
    raise ExportDisagrees(
        f"{learner_pkl}: the exported ONNX model does not answer as the learner does, so "
        f"nothing was written. On {worst.path}, {worst.detail}; largest difference {shown} "
        f"(tolerance {TOLERANCE}, {len(paths)} images checked). teddywatch reproduces this "
        "learner's transforms, so the difference comes from the model itself (an ONNX export "
        "that computes differently) or, for a --check photo, from its EXIF rotation or "
        "transparency, which teddywatch applies and learn.predict does not. Serve this learner "
        "with engine = \"fastai\" ([model] path = the .pkl).")
