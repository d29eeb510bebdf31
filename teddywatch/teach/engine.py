"""The model as the user taught it: a base OnnxEngine plus the learned version in use.

`LearnedEngine` is an Engine (teddywatch.engines.Engine). Before each batch it looks at the
version history (one stat); when `teddywatch learn` or `learn --undo` has changed it, the new
adapter is loaded there, between two batches, so a queued file is never lost or classified twice
and every Prediction says which version made it (`bears-int8.onnx@27c8ea75+v3`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

from PIL import Image

from teddywatch.engines import Engine
from teddywatch.results import Prediction
from teddywatch.teach.adapter import Adapter
from teddywatch.teach.versions import SHIPPED, ModelVersions

log = logging.getLogger(__name__)


class LearnedEngine:
    def __init__(self, base, versions: ModelVersions) -> None:  # noqa: ANN001 - an OnnxEngine
        self.base = base
        self.versions = versions
        self.labels = base.labels
        self.decode_size = base.decode_size
        self.default_threshold = base.default_threshold
        self.concurrent_predict = base.concurrent_predict
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._version = SHIPPED
        self._adapter: Adapter | None = None
        self._refresh()

    @property
    def version(self) -> int:
        return self._version

    @property
    def model_id(self) -> str:
        return learned_name(self.base.model_id, self._version)

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        version, adapter = self._refresh()
        model = learned_name(self.base.model_id, version)
        probabilities, features = self.base.predict_arrays(images, features=adapter is not None)
        if adapter is not None and features is not None:
            probabilities = adapter.apply(probabilities, features)
        return [_prediction(self.labels, row, model) for row in probabilities]

    def close(self) -> None:
        self.base.close()

    def _refresh(self) -> tuple[int, Adapter | None]:
        with self._lock:
            stamp = self.versions.stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                version = self.versions.current()
                if version != self._version or (version and self._adapter is None):
                    try:
                        self._adapter = self.versions.load(version)
                        if self._version != version:
                            log.info("now classifying with %s", learned_name(self.base.model_id,
                                                                          version))
                        self._version = version
                    except (OSError, ValueError, KeyError) as exc:
                        log.error("cannot load learned version %d (%s); keeping %s", version,
                                  exc, learned_name(self.base.model_id, self._version))
            return self._version, self._adapter


def learned_name(base: str, version: int) -> str:
    return base if version == SHIPPED else f"{base}+v{version}"


def _prediction(labels: tuple[str, ...], row, model: str) -> Prediction:  # noqa: ANN001
    order = row.argsort()[::-1]
    top = tuple((labels[i], float(row[i])) for i in order)
    return Prediction(label=top[0][0], confidence=top[0][1], top=top, model=model)


def can_learn(engine: Engine) -> bool:
    """True for an onnx engine whose model returns its features (exported by this teddywatch)."""
    return bool(getattr(engine, "features_output", None))


def with_learning(engine: Engine, versions_root: Path | None = None) -> Engine:
    """`engine` wrapped so it serves the learned version in use; unchanged if it cannot learn."""
    if not can_learn(engine):
        return engine
    return LearnedEngine(engine, ModelVersions(engine.model_id, versions_root))
