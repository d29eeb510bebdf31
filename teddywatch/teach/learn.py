"""`teddywatch learn`: fit the user's corrections into a new version of the model, in seconds,
with onnxruntime and NumPy only (no torch, no fastai).

    learn(model_path) -> LearnReport

1. The model computes features and probabilities for each correction's example picture.
2. An adapter (teach/adapter.py) is fitted on them, held to the model's own answers on the anchor
   pictures shipped beside it (`<model>.anchors.npz`).
3. It is checked on the check pictures shipped beside the model (`<model>.checkset.npz`): a
   version that answers fewer of them right than the shipped model, or fewer of any one label
   (so no dog it learns can cost a bear), is kept but not used, and the report says why.
4. Otherwise it becomes the version in use (teach/versions.py); a running service picks it up
   before its next batch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from teddywatch.engines import ModelError
from teddywatch.teach.adapter import (Adapter, Anchors, FitSettings, anchors_path, checkset_path,
                                      fit_adapter)
from teddywatch.teach.corrections import Correction, CorrectionStore
from teddywatch.teach.versions import ModelVersions


class LearnError(Exception):
    """Nothing can be learned; the message (one line) says why and what to do."""


@dataclass
class LearnReport:
    model: str
    version: int
    used: bool
    corrections: int
    fixed: int
    check: Check | None
    seconds: float
    reason: str = ""
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"learned from {self.corrections} correction{'s' * (self.corrections != 1)} in "
               f"{self.seconds:.1f} s: {self.fixed} of {self.corrections} now answered as "
               "corrected"]
        if self.check is not None:
            c = self.check
            out.append(f"check pictures: {c.learned} of {c.total} right (the shipped model: "
                       f"{c.shipped})")
        else:
            out.append("no check pictures beside this model: nothing checked it still knows "
                       "what it knew")
        out += [f"skipped: {s}" for s in self.skipped]
        name = f"{self.model}+v{self.version}"
        out.append(f"now classifying with {name}" if self.used else
                   f"kept {name} but not using it: {self.reason}")
        return out


def compute_features(engine, paths: Sequence[Path], batch: int = 32  # noqa: ANN001
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, features) of `paths` through teddywatch's decoder and `engine`."""
    from teddywatch.imaging import DecodeError, decode_all

    probabilities, features = [], []
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        images = []
        for path, (image, _) in zip(chunk, decode_all([str(p) for p in chunk],
                                                      engine.decode_size)):
            if isinstance(image, BaseException):
                raise DecodeError(f"{path}: {image}")
            images.append(image)
        p, f = engine.predict_arrays(images, features=True)
        if f is None:
            raise LearnError(f"{engine.model_id} does not return its features")
        probabilities.append(p)
        features.append(f)
    return np.concatenate(probabilities), np.concatenate(features)


def learn(model_path: Path, *, store: CorrectionStore | None = None,
          versions_root: Path | None = None, settings: FitSettings = FitSettings(),
          engine=None) -> LearnReport:  # noqa: ANN001 - an OnnxEngine, to share a loaded one
    started = time.perf_counter()
    engine = engine or _engine(model_path)
    store = store or CorrectionStore()
    usable, skipped = _usable(store.active(), engine.labels)
    if not usable:
        raise LearnError(
            "no corrections to learn from yet: say a result is wrong with "
            "'teddywatch correct FILE LABEL', or from the tray or the gallery"
            + (f" ({len(skipped)} skipped: {skipped[0]})" if skipped else ""))
    probabilities, features = compute_features(engine, [c.example for c in usable])
    targets = np.array([engine.labels.index(c.label) for c in usable])
    anchors = _load(anchors_path(model_path)) or Anchors.empty(features.shape[1],
                                                               len(engine.labels))
    checkset = _load(checkset_path(model_path))
    fits = fit_adapter(engine.labels, features, probabilities, targets, anchors, settings)
    for weight, adapter in fits:  # strongest first: the first that passes the check stays
        check = _check(adapter, checkset, engine.labels, engine.default_threshold)
        if check is None or check.passed:
            break
    fixed = int((adapter.apply(probabilities, features).argmax(axis=1) == targets).sum())
    adapter.info = {"base": engine.model_id, "corrections": len(usable),
                    "learned_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "check": asdict(check) if check else None,
                    "correction_weight": weight, "settings": asdict(settings)}
    versions = ModelVersions(engine.model_id, versions_root)
    version = versions.save(adapter)
    worse = check is not None and not check.passed
    if not worse:
        versions.use(version)
    reason = check.why() if worse and check else ""
    return LearnReport(engine.model_id, version, not worse, len(usable), fixed, check,
                       time.perf_counter() - started, reason, skipped)


def _engine(model_path: Path):  # noqa: ANN202
    if model_path.suffix.lower() != ".onnx":
        raise LearnError(f"{model_path}: learning in the lean runtime needs an .onnx model; for a "
                         "fast.ai learner use 'teddywatch train --corrections' (the [fastai] "
                         "extra), or export it with 'teddywatch export'")
    from teddywatch.engines.onnx import OnnxEngine

    try:
        engine = OnnxEngine(model_path)
    except ModelError as exc:
        raise LearnError(str(exc)) from None
    if not engine.features_output:
        raise LearnError(f"{model_path}: this model does not return its features, so it cannot "
                         "learn; export it again with this teddywatch ('teddywatch export "
                         "LEARNER.pkl'), which adds them")
    return engine


def _usable(corrections: list[Correction], labels: Sequence[str]
            ) -> tuple[list[Correction], list[str]]:
    usable, skipped = [], []
    for c in corrections:
        if c.label not in labels:
            skipped.append(f"{c.path}: '{c.label}' is not a label of this model")
        elif c.example is None or not c.example.is_file():
            skipped.append(f"{c.path}: its example picture is gone ({c.example})")
        else:
            usable.append(c)
    return usable, skipped


def _load(path: Path) -> Anchors | None:
    return Anchors.load(path) if path.is_file() else None


def answered_right(probabilities: np.ndarray, truth: np.ndarray, labels: Sequence[str],
                   threshold: float) -> np.ndarray:
    """As the model card counts: a picture of `other` is right when it is not called anything
    else for sure (`other`, or unsure); any other label must be named, and sure."""
    best, sure = probabilities.argmax(axis=1), probabilities.max(axis=1) >= threshold
    if "other" not in labels:
        return (best == truth) & sure
    other = list(labels).index("other")
    return np.where(truth == other, (best == other) | ~sure, (best == truth) & sure)


@dataclass
class Check:
    """How a learned version answers the check pictures, against the shipped model."""

    shipped: int
    learned: int
    total: int
    worse_labels: dict[str, tuple[int, int]]  # label -> (shipped right, learned right)

    @property
    def passed(self) -> bool:
        return self.learned >= self.shipped and not self.worse_labels

    def why(self) -> str:
        if self.learned < self.shipped:
            said = (f"it answers {self.learned} of {self.total} check pictures right, fewer than "
                    f"the shipped model's {self.shipped}")
        else:
            label, (was, now) = next(iter(self.worse_labels.items()))
            said = (f"it names {now} of the check pictures of {label} right, fewer than the "
                    f"shipped model's {was}")
        return said + "; correct a few more pictures of the same kind and learn again"


def _check(adapter: Adapter, checkset: Anchors | None, labels: Sequence[str],
           threshold: float) -> Check | None:
    if checkset is None or not len(checkset.labels):
        return None
    adapted = adapter.apply(checkset.probabilities, checkset.features)
    shipped = answered_right(checkset.probabilities, checkset.labels, labels, threshold)
    learned = answered_right(adapted, checkset.labels, labels, threshold)
    worse = {}
    for index, label in enumerate(labels):
        mine = checkset.labels == index
        was, now = int(shipped[mine].sum()), int(learned[mine].sum())
        if now < was:
            worse[label] = (was, now)
    return Check(int(shipped.sum()), int(learned.sum()), len(checkset.labels), worse)
