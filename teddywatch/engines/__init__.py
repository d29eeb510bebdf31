"""Engines turn decoded images into Predictions. One small interface, picked by name.

Heavy imports (onnxruntime, fastai/torch) happen inside the implementation that needs them, so
`teddywatch --help` and `config check` start fast and the lean runtime never imports torch.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Protocol, Sequence

from PIL import Image

from teddywatch.results import Prediction

log = logging.getLogger(__name__)

ENGINES = ("auto", "onnx", "fastai")


class ModelError(Exception):
    """A model that cannot be loaded; the message says what to do, in one paragraph."""


class Engine(Protocol):
    """What the worker needs from a model."""

    #: Short id written to the log's `model` column, e.g. "bears.onnx@1a2b3c4d".
    model_id: str
    #: Class labels in output order.
    labels: tuple[str, ...]
    #: The decoder may shrink images (JPEG draft) but keeps at least this many pixels per side.
    decode_size: int
    #: The model's own recommended unsure threshold (config may override it).
    default_threshold: float
    #: True if predict() may run on two threads at once (an onnxruntime session may).
    concurrent_predict: bool

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """One Prediction per RGB image, in order."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...


def file_sha256(path: Path) -> str:
    """The sha256 of a model file, read in chunks (models are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pick_engine(model_path: Path, engine: str = "auto") -> str:
    """`auto` picks by file type: .onnx -> onnx, .pkl/.pth -> fastai."""
    if engine != "auto":
        return engine
    suffix = model_path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pkl", ".pth", ".pt"):
        return "fastai"
    raise ModelError(
        f"{model_path}: cannot tell which engine runs a '{suffix or 'extensionless'}' file. "
        "Use a .onnx file (onnx engine) or a fast.ai export .pkl (fastai engine), "
        "or set [model] engine = \"onnx\" or \"fastai\"."
    )


def learner_beside(onnx_path: Path) -> Path | None:
    """The fast.ai learner an .onnx model was exported from, if it lies beside it: the same
    name (`export.onnx` from `export.pkl`), or without `-int8` (`bears-int8.onnx`, `bears.pkl`)."""
    stems = [onnx_path.stem]
    if onnx_path.stem.endswith("-int8"):
        stems.append(onnx_path.stem[:-len("-int8")])
    for stem in stems:
        candidate = onnx_path.with_name(stem + ".pkl")
        if candidate.is_file():
            return candidate
    return None


def _fastai_needs_learner(onnx_path: Path) -> str:
    """One line: the fastai engine cannot run an .onnx file; where its learner is, if known."""
    learner = learner_beside(onnx_path)
    where = (f"this model's learner is {learner}: use --model {learner}" if learner else
             f"no learner was found beside it ({onnx_path.with_suffix('.pkl').name}); point "
             "--model or [model] path at the .pkl the model was exported from")
    return (f"{onnx_path}: the fastai engine needs the fast.ai learner (.pkl), not an ONNX "
            f"model; {where}, or use --engine onnx.")


def load_engine(model_path: Path, engine: str = "auto", *, threads: int = 0,
                code: Sequence[Path] = ()) -> Engine:
    """Load the model at `model_path` with the named engine.

    `threads` caps the engine's intra-op threads (0 = the engine's default). `code` lists Python
    files that define functions a fast.ai learner was pickled with (its labelling function, say).
    """
    if not model_path.exists():
        raise ModelError(f"{model_path}: model file not found. Check [model] path in the config "
                         "or the --model option.")
    kind = pick_engine(model_path, engine)
    log.debug("loading %s with the %s engine", model_path, kind)
    if kind == "onnx":
        from teddywatch.engines.onnx import OnnxEngine

        return OnnxEngine(model_path, threads=threads)
    if kind == "fastai":
        if model_path.suffix.lower() == ".onnx":
            raise ModelError(_fastai_needs_learner(model_path))
        from teddywatch.engines.fastai import FastaiEngine

        return FastaiEngine(model_path, threads=threads, code=code)
    raise ModelError(f"unknown engine '{engine}': expected one of {', '.join(ENGINES)}")
