"""What kind of fast.ai learner a .pkl holds, and a clear refusal for the kinds teddywatch cannot serve.

teddywatch answers "which one label, how sure" for single-label image classifiers
(`CategoryBlock`). Other learners load fine in fast.ai but their outputs mean something else:

* multi-label (`MultiCategoryBlock`): one sigmoid score per label, several labels may apply;
  showing the top one with its score as a confidence would be a silent wrong answer;
* regression (`RegressionBlock`) and keypoints (`PointBlock`): numbers or coordinates, no labels.

`refuse_unservable(learn, path)` raises a one-paragraph ModelError for those, at export and when
the fastai engine loads a learner. It only reads the learner's attributes (no torch import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from teddywatch.engines import ModelError

SERVED = ("teddywatch serves single-label image classifiers (DataBlock(blocks=(ImageBlock, "
          "CategoryBlock)), ImageDataLoaders.from_folder / from_name_func / from_lists, "
          "vision_learner)")


def transform_names(learn: Any) -> set[str]:
    """Class names of the learner's item, batch and per-dataset (x and y) transforms."""
    names: set[str] = set()
    dls = getattr(learn, "dls", None)

    def add(pipeline: Any) -> None:
        for t in getattr(pipeline, "fs", None) or ():
            names.add(type(t).__name__)

    for attr in ("after_item", "after_batch"):
        try:
            add(getattr(dls, attr))
        except Exception:  # noqa: BLE001 - a learner missing an attribute is judged below
            pass
    try:
        pipelines: Iterable[Any] = dls.valid_ds.tfms  # type: ignore[union-attr]
        for p in pipelines:
            add(p)
    except Exception:  # noqa: BLE001
        pass
    return names


def loss_name(learn: Any) -> str:
    loss = getattr(learn, "loss_func", None)
    name = type(loss).__name__
    inner = getattr(loss, "func", None)
    return f"{name} ({type(inner).__name__})" if name == "BaseLoss" and inner is not None else name


def kind(learn: Any) -> str:
    """'single-label', 'multi-label', 'regression', 'keypoints' or 'unknown'."""
    tfms = transform_names(learn)
    loss = loss_name(learn)
    if "MultiCategorize" in tfms or "OneHotEncode" in tfms or loss.startswith("BCE"):
        return "multi-label"
    if "PointScaler" in tfms:
        return "keypoints"
    if "RegressionSetup" in tfms or "MSELoss" in loss or "L1Loss" in loss:
        return "regression"
    try:
        vocab = learn.dls.vocab
    except AttributeError:
        return "unknown"
    return "single-label" if vocab is not None and len(vocab) > 0 else "unknown"


def refuse_unservable(learn: Any, path: Path) -> None:
    """Raise ModelError (one paragraph) unless `learn` is a single-label classifier."""
    found = kind(learn)
    if found == "single-label":
        return
    loss = loss_name(learn)
    if found == "multi-label":
        raise ModelError(
            f"{path}: this is a multi-label learner (MultiCategoryBlock, loss {loss}): it scores "
            "every label independently and any number of them may apply, while teddywatch "
            "shows one label per image with its confidence, which would be a wrong answer for "
            f"this model. It is refused by both engines and by export. {SERVED}; retrain with "
            "CategoryBlock if each image has exactly one label, or keep using learn.predict for "
            "this one.")
    what = {"regression": "a regression learner (RegressionBlock): it predicts numbers",
            "keypoints": "a keypoint learner (PointBlock): it predicts point coordinates",
            }.get(found, "not a single-label classifier: it has no class vocabulary")
    raise ModelError(
        f"{path}: this is {what} (loss {loss}), not labels, so teddywatch has nothing to "
        f"show or log for it; it is refused by both engines and by export. {SERVED}.")
