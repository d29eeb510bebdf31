"""A learned correction on top of a model: extra logits from the features the model computes.

    probabilities = softmax(log(p_model) + W @ ((features - mean) / scale) + b)

W and b start at zero, so an adapter that learned nothing is the model itself. `fit_adapter`
finds them with NumPy alone (no torch, no fastai): cross-entropy on the user's corrections, plus
KL divergence to the model's own answers on anchor pictures it gets right (so it cannot forget
the bears), plus an L2 pull of W towards zero (towards the shipped head).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

FORMAT = "teddywatch-adapter/1"


@dataclass(frozen=True)
class FitSettings:
    """How hard corrections pull against the anchors. Chosen on a tuning split (bench/teach.py).

    A correction weighs `correction_weights[i]` anchors. `learn` tries the weights strongest
    first, each fit starting from the last, and keeps the first adapter that passes the check
    (teach/learn.py): as much of the corrections as the check pictures allow.
    """

    l2: float = 3e-2            # pull of W towards zero, per feature
    correction_weights: tuple[float, ...] = (3200.0, 1600.0, 800.0, 400.0, 200.0, 100.0, 50.0,
                                             25.0, 10.0)
    bear_anchor_weight: float = 10.0  # anchors the model must keep: weight of its non-`other` ones
    steps: int = 300            # for the first fit; each weaker one continues for a third of it
    learning_rate: float = 0.05


@dataclass
class Adapter:
    labels: tuple[str, ...]
    mean: np.ndarray   # (d,)
    scale: np.ndarray  # (d,)
    weight: np.ndarray  # (labels, d)
    bias: np.ndarray   # (labels,)
    info: dict = field(default_factory=dict)

    def apply(self, probabilities: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The adapted probabilities for a batch (n x labels), from the model's own outputs."""
        return softmax(_logits(probabilities) + self.delta(features))

    def delta(self, features: np.ndarray) -> np.ndarray:
        x = (np.asarray(features, dtype=np.float32) - self.mean) / self.scale
        return x @ self.weight.T + self.bias

    def save(self, path: Path) -> None:
        """One .npz: arrays plus the info as JSON; written whole or not at all."""
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, scale=self.scale, weight=self.weight, bias=self.bias,
                 meta=np.frombuffer(json.dumps({"format": FORMAT, "labels": list(self.labels),
                                                "info": self.info}).encode(), dtype=np.uint8))
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Adapter":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a teddywatch adapter ({meta.get('format')!r})")
            return cls(labels=tuple(meta["labels"]), mean=data["mean"], scale=data["scale"],
                       weight=data["weight"], bias=data["bias"], info=meta.get("info", {}))


@dataclass
class Anchors:
    """Pictures whose answers must not change: features, the model's probabilities, labels."""

    features: np.ndarray        # (n, d)
    probabilities: np.ndarray   # (n, labels)
    labels: np.ndarray          # (n,) label index, -1 when unknown

    @classmethod
    def empty(cls, width: int, n_labels: int) -> "Anchors":
        return cls(np.zeros((0, width)), np.zeros((0, n_labels)), np.zeros(0, dtype=int))

    def save(self, path: Path) -> None:
        np.savez_compressed(path, features=self.features.astype(np.float16),
                            probabilities=self.probabilities.astype(np.float32),
                            labels=self.labels.astype(np.int16))

    @classmethod
    def load(cls, path: Path) -> "Anchors":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["features"].astype(np.float32),
                       data["probabilities"].astype(np.float32), data["labels"].astype(int))

    def kept(self) -> "Anchors":
        """Only the anchors the model answers right (or whose label is unknown): keeping a wrong
        answer would fight the corrections that fix it."""
        if not len(self.labels):
            return self
        right = (self.labels < 0) | (self.probabilities.argmax(axis=1) == self.labels)
        return Anchors(self.features[right], self.probabilities[right], self.labels[right])


def anchors_path(model: Path) -> Path:
    """Where a model's anchors lie: `bears-int8.onnx` -> `bears-int8.anchors.npz`."""
    return model.with_name(f"{model.stem}.anchors.npz")


def checkset_path(model: Path) -> Path:
    """The check a learned model must pass: `bears-int8.onnx` -> `bears-int8.checkset.npz`."""
    return model.with_name(f"{model.stem}.checkset.npz")


def fit_adapter(labels: tuple[str, ...], features: np.ndarray, probabilities: np.ndarray,
                targets: np.ndarray, anchors: Anchors, settings: FitSettings = FitSettings(),
                other_label: str = "other") -> Iterator[tuple[float, Adapter]]:
    """Adapters for corrections (features, the model's probabilities, target label indices), one
    per correction weight in `settings.correction_weights`, strongest first (lazily: stop
    iterating once one will do)."""
    features = np.asarray(features, dtype=np.float32)
    anchors = anchors.kept()
    reference = anchors.features if len(anchors.features) >= 2 else features
    mean = reference.mean(axis=0).astype(np.float32)
    scale = (reference.std(axis=0) + 1e-3).astype(np.float32)
    xc = (features - mean) / scale
    xa = ((np.asarray(anchors.features, dtype=np.float32) - mean) / scale)
    zc, za = _logits(probabilities), _logits(anchors.probabilities)
    onehot = np.eye(len(labels), dtype=np.float32)[targets]
    pa = np.asarray(anchors.probabilities, dtype=np.float32)
    other = labels.index(other_label) if other_label in labels else -1
    anchor_weight = np.where(anchors.labels == other, 1.0, settings.bear_anchor_weight
                             ).astype(np.float32)[:, None]
    total = float(anchor_weight.sum()) + 1.0  # every term is per anchor-equivalent

    weight = np.zeros((len(labels), xc.shape[1]), dtype=np.float32)
    bias = np.zeros(len(labels), dtype=np.float32)
    steps = settings.steps
    for correction_weight in settings.correction_weights:
        adam = _Adam((weight, bias), settings.learning_rate)
        for _ in range(steps):
            grad_c = correction_weight * (softmax(zc + xc @ weight.T + bias) - onehot) / total
            grad_a = anchor_weight * (softmax(za + xa @ weight.T + bias) - pa) / total
            grad_w = grad_c.T @ xc + grad_a.T @ xa + 2 * settings.l2 * weight
            grad_b = grad_c.sum(axis=0) + grad_a.sum(axis=0)
            adam.step((grad_w, grad_b))
        yield correction_weight, Adapter(labels=tuple(labels), mean=mean, scale=scale,
                                         weight=weight.copy(), bias=bias.copy())
        steps = max(1, settings.steps // 3)


class _Adam:
    """Adam on a few NumPy arrays, updated in place."""

    def __init__(self, params: tuple[np.ndarray, ...], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: tuple[np.ndarray, ...]) -> None:
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= self.lr * (m / (1 - 0.9 ** self.t)) / (np.sqrt(v / (1 - 0.999 ** self.t)) + 1e-8)


def _logits(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float32), 1e-7, 1.0))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
