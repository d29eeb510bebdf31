"""The lean engine: an onnxruntime session plus fast.ai's validation preprocessing in NumPy.

No torch here. The preprocessing is read from the metadata that `teddywatch export` wrote from the
learner itself, and reproduces fast.ai's PIL pipeline step for step (same crop box, same Pillow
resize call), so both engines see the same pixels.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from teddywatch.engines import ModelError
from teddywatch.engines.probe import check_outputs
from teddywatch.imaging import DECODE_MARGIN, DECODE_THREADS, decode_size, thread_pool
from teddywatch.results import Prediction

#: The optional second output: what the model's last layer reads (training/features_output.py).
FEATURES_OUTPUT = "features"

log = logging.getLogger(__name__)

METADATA_FORMAT = "teddywatch-model/1"
_PAD_MODES = {"reflection": "reflect", "zeros": "constant", "border": "edge"}


@dataclass(frozen=True)
class Preprocess:
    """fast.ai's validation-time item transform, as recorded in the model's metadata."""

    width: int
    height: int
    transform: str = "Resize"  # or "RandomResizedCrop"
    method: str = "crop"  # crop | squish | pad (Resize only)
    pad_mode: str = "reflection"
    val_xtra: float = 0.14
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resample: str = "bilinear"  # the Pillow filter of fast.ai's resize (its `resamples[0]`)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> "Preprocess":
        height, width = meta["input"]["size"]  # fast.ai sizes are (rows, columns)
        resize = meta.get("resize") or {}
        norm = meta.get("normalize") or {}
        return cls(width=int(width), height=int(height),
                   transform=resize.get("transform", "Resize"),
                   method=resize.get("method", "crop"),
                   pad_mode=resize.get("pad_mode", "reflection"),
                   val_xtra=float(resize.get("val_xtra", 0.14) or 0.0),
                   mean=tuple(norm["mean"]) if norm.get("mean") else None,
                   std=tuple(norm["std"]) if norm.get("std") else None,
                   resample=str(resize.get("resample", "bilinear")))

    @functools.cached_property
    def filter(self) -> Image.Resampling:
        try:
            return Image.Resampling[self.resample.upper()]
        except KeyError:
            raise ModelError(f"the model's metadata names an unknown resize filter "
                             f"{self.resample!r}; re-export it with 'teddywatch export'.") from None

    def resize(self, image: Image.Image) -> Image.Image:
        """The image as fast.ai's validation transform leaves it: exactly width x height."""
        if self.transform == "RandomResizedCrop":
            # Validation: squish the whole image to size + xtra, then center-crop to size.
            xtra = math.ceil(max(self.width, self.height) * self.val_xtra / 8) * 8
            squished = image.resize((self.width + xtra, self.height + xtra), self.filter)
            return _center_crop(squished, self.width, self.height)
        if self.method == "squish":
            return image.resize((self.width, self.height), self.filter)
        return self._crop_or_pad(image)

    def _crop_or_pad(self, image: Image.Image) -> Image.Image:
        """fast.ai `Resize` with method crop or pad, centered as at validation."""
        w, h = image.size
        rw, rh = w / self.width, h / self.height
        # crop keeps the smaller ratio (fills the frame); pad keeps the larger (fits inside).
        m = max(rw, rh) if self.method == "pad" else min(rw, rh)
        cw, ch = int(m * self.width), int(m * self.height)
        left, top = int(0.5 * (w - cw)), int(0.5 * (h - ch))
        if left >= 0 and top >= 0:
            box = image.crop((left, top, left + cw, top + ch))
        else:
            box = self._pad(image, left, top, cw, ch)
        return box.resize((self.width, self.height), self.filter)

    def _pad(self, image: Image.Image, left: int, top: int, cw: int, ch: int) -> Image.Image:
        w, h = image.size
        crop_left, crop_top = max(left, 0), max(top, 0)
        inner = image.crop((crop_left, crop_top, min(left + cw, w), min(top + ch, h)))
        pad_l, pad_t = max(-left, 0), max(-top, 0)
        pad_r, pad_b = max(cw - w + left, 0), max(ch - h + top, 0)
        array = np.asarray(inner)
        padded = np.pad(array, ((pad_t, pad_b), (pad_l, pad_r), (0, 0)),
                        mode=_PAD_MODES.get(self.pad_mode, "reflect"))
        return Image.fromarray(padded)

    def to_array(self, image: Image.Image, out: np.ndarray) -> None:
        """Write the normalised CHW float32 tensor for `image` into `out` (no extra copies).

        (pixels / 255 - mean) / std is computed as pixels * scale + bias, straight from the
        uint8 pixels into `out`: two passes, no float HWC temporary. The final centre crop of
        RandomResizedCrop is a view, not a copy.
        """
        if self.transform == "RandomResizedCrop":
            xtra = math.ceil(max(self.width, self.height) * self.val_xtra / 8) * 8
            squished = np.asarray(image.resize((self.width + xtra, self.height + xtra),
                                               self.filter))
            h, w = squished.shape[:2]
            left, top = (w - self.width) // 2, (h - self.height) // 2
            pixels = squished[top:top + self.height, left:left + self.width]
        else:
            pixels = np.asarray(self.resize(image))  # HWC uint8
        scale, bias = self._scale_bias
        np.multiply(pixels.transpose(2, 0, 1), scale, out=out)
        if bias is not None:
            out += bias

    @functools.cached_property
    def _scale_bias(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.mean is None or self.std is None:
            return np.full((3, 1, 1), 1 / 255, dtype=np.float32), None
        mean = np.asarray(self.mean, dtype=np.float64)[:, None, None]
        std = np.asarray(self.std, dtype=np.float64)[:, None, None]
        return (1 / (255 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def _center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    w, h = image.size
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


def read_metadata(model_path: Path) -> dict[str, Any]:
    """The JSON written beside an exported model (`bears.onnx` -> `bears.json`)."""
    meta_path = model_path.with_suffix(".json")
    if not meta_path.exists():
        raise ModelError(
            f"{model_path}: no metadata file {meta_path.name} beside the model, so the labels and "
            "preprocessing are unknown. Export the model with 'teddywatch export LEARNER.pkl', "
            "which writes both files.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != METADATA_FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {METADATA_FORMAT!r}")
        if not meta.get("labels") or len(meta["input"]["size"]) != 2:
            raise ValueError("labels or input.size missing")
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{meta_path}: not valid teddywatch model metadata ({exc}). "
                         "Re-export the model with 'teddywatch export'.") from None
    return meta


class OnnxEngine:
    """An onnxruntime session over an exported model; see the Engine protocol."""

    def __init__(self, model_path: Path, *, threads: int = 0) -> None:
        self.meta = read_metadata(model_path)
        self.labels = tuple(self.meta["labels"])
        self.preprocess = Preprocess.from_metadata(self.meta)
        self.decode_size = decode_size(max(self.preprocess.width, self.preprocess.height),
                                       decode_margin(self.meta, model_path))
        self.default_threshold = float(self.meta.get("unsure_threshold", 0.5))
        self.outputs_probabilities = self.meta.get("output", "probabilities") == "probabilities"
        self.concurrent_predict = True  # onnxruntime's Run is thread-safe; Preprocess is stateless
        sha = self.meta.get("sha256") or ""
        self.model_id = f"{model_path.name}@{sha[:8]}" if sha else model_path.name
        self.session = _open_session(model_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        # Models exported by this teddywatch also return what their last layer reads; `learn`
        # fits the user's corrections on it (teddywatch/teach/).
        self.features_output = FEATURES_OUTPUT if FEATURES_OUTPUT in outputs[1:] else None
        self._outputs = [outputs[0]]
        check_outputs(self, model_path)

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        if not images:
            return []
        probabilities, _ = self.predict_arrays(images)
        return [_prediction(self.labels, row) for row in probabilities]

    def predict_arrays(self, images: Sequence[Image.Image], *, features: bool = False
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (n x labels) and, if asked and the model has them, features (n x d)."""
        batch = np.empty((len(images), 3, self.preprocess.height, self.preprocess.width),
                         dtype=np.float32)
        if len(images) == 1 or DECODE_THREADS == 1:
            for index, image in enumerate(images):
                self.preprocess.to_array(image, batch[index])
        else:  # resize + normalise on the decode threads (Pillow and NumPy release the GIL)
            list(thread_pool().map(self.preprocess.to_array, images, batch))
        names = self._outputs + ([self.features_output]
                                 if features and self.features_output else [])
        scores, *extra = self.session.run(names, {self.input_name: batch})
        probabilities = scores if self.outputs_probabilities else _softmax(scores)
        return probabilities, (extra[0] if extra else None)

    def close(self) -> None:
        self.session = None  # onnxruntime frees the session when it is collected


def decode_margin(meta: dict[str, Any], model_path: Path) -> float | None:
    """The decode margin `teddywatch export` measured for this model (None: whole images).

    Metadata without one (the default model, older exports) gets imaging.DECODE_MARGIN."""
    decoding = meta.get("decode") or {}
    if "margin" not in decoding:
        return DECODE_MARGIN
    margin = decoding["margin"]
    if margin is None or (isinstance(margin, (int, float)) and margin >= 1):
        return margin
    raise ModelError(f"{model_path.with_suffix('.json')}: decode.margin is {margin!r}, expected "
                     "a number of at least 1 or null. Re-export the model with 'teddywatch "
                     "export'.")


def _open_session(model_path: Path, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("the onnx engine needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No spin-waiting between runs: the decode threads need those cores while the next batch
    # is read, and an idle tray app must not burn CPU.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # onnxruntime's warnings are for developers, not users
    try:
        return ort.InferenceSession(str(model_path), sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"{model_path}: onnxruntime cannot load this model: "
                         f"{' '.join(str(exc).split())[:300]}. Re-export it with "
                         "'teddywatch export LEARNER.pkl'.") from None


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _prediction(labels: tuple[str, ...], probabilities: np.ndarray) -> Prediction:
    order = np.argsort(-probabilities)
    top = tuple((labels[i], float(probabilities[i])) for i in order)
    return Prediction(label=top[0][0], confidence=top[0][1], top=top)
