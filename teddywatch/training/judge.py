"""Judge a bears model on pictures and sources it never trained on, per kind of picture.

Scores are computed from rows of (picture, 4-way probabilities, threshold), so the same code
scores the served ONNX model (through teddywatch's own decoder and onnx engine, as a user gets it),
the fastai learner, and the baselines. Only NumPy and the standard library here.

A bear counts as **named right and sure** when the top label is its label and the confidence is at
or above the unsure threshold; a bear is **lost** when the answer is `other` or `unsure`. A non-bear
is **rejected** when the answer is `other` or `unsure`. The calibration error (ECE, 15 equal-width
bins) compares the top confidence with how often the top label is right.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from teddywatch.training.data import KIND_NAMES, LABELS, Item


@dataclass(frozen=True)
class Row:
    """One picture's answer from one model."""

    item: Item
    probs: tuple[float, ...]  # in LABELS order
    threshold: float          # unsure below this top confidence; 0 = never unsure

    @property
    def label(self) -> str:
        return LABELS[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(max(self.probs))

    @property
    def unsure(self) -> bool:
        return self.confidence < self.threshold

    @property
    def bear_right_and_sure(self) -> bool:
        return self.label == self.item.label and not self.unsure

    @property
    def rejected(self) -> bool:
        """`other` or `unsure`: what a non-bear should get and a bear should not."""
        return self.label == "other" or self.unsure

    @property
    def mistake(self) -> bool:
        return not self.bear_right_and_sure if self.item.is_bear else not self.rejected


def _rate(good: int, n: int) -> dict:
    return {"n": n, "good": good, "rate": round(good / n, 4) if n else None}


def ece(rows: Sequence[Row], bins: int = 15) -> float:
    """Expected calibration error of the top confidence (equal-width bins)."""
    if not rows:
        return float("nan")
    conf = np.array([r.confidence for r in rows])
    right = np.array([r.label == r.item.label for r in rows], dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(conf[m].mean() - right[m].mean())
    return round(float(total), 4)


def score(rows: Sequence[Row]) -> dict:
    """Headline numbers, per kind and per source, the calibration error and every mistake."""
    bears = [r for r in rows if r.item.is_bear]
    negs = [r for r in rows if not r.item.is_bear]
    out: dict = {
        "bears_right_and_sure": _rate(sum(r.bear_right_and_sure for r in bears), len(bears)),
        "bears_lost": _rate(sum(r.rejected for r in bears), len(bears)),
        "nonbears_rejected": _rate(sum(r.rejected for r in negs), len(negs)),
    }
    for kind in ("cat", "dog"):
        sel = [r for r in negs if r.item.kind == kind]
        out[f"{kind}s_rejected"] = _rate(sum(r.rejected for r in sel), len(sel))
    kinds: dict[str, list[Row]] = defaultdict(list)
    sources: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        kinds[r.item.kind].append(r)
        sources[r.item.source].append(r)
    out["by_kind"] = {KIND_NAMES.get(k, k): _rate(sum(not r.mistake for r in v), len(v))
                      for k, v in sorted(kinds.items())}
    out["by_source"] = {s: _rate(sum(not r.mistake for r in v), len(v))
                        for s, v in sorted(sources.items())}
    out["ece"] = ece(rows)
    out["mistakes"] = [
        {"file": str(r.item.path), "truth": r.item.label, "kind": r.item.kind,
         "source": r.item.source, "label": r.label, "confidence": round(r.confidence, 4),
         "unsure": r.unsure}
        for r in sorted((r for r in rows if r.mistake), key=lambda r: -r.confidence)
    ]
    return out


def targets_met(s: dict) -> dict[str, bool]:
    """The issue's targets: >= 99% bears right and sure, <= 1% bears lost, >= 99% non-bears,
    cats and dogs rejected."""
    return {
        "bears_right_and_sure >= 99%": s["bears_right_and_sure"]["rate"] >= 0.99,
        "bears_lost <= 1%": s["bears_lost"]["rate"] <= 0.01,
        "nonbears_rejected >= 99%": s["nonbears_rejected"]["rate"] >= 0.99,
        "cats_rejected >= 99%": s["cats_rejected"]["rate"] >= 0.99,
        "dogs_rejected >= 99%": s["dogs_rejected"]["rate"] >= 0.99,
    }


def rows_from_probs(items: Sequence[Item], probs: np.ndarray, threshold: float) -> list[Row]:
    return [Row(it, tuple(float(v) for v in p), threshold) for it, p in zip(items, probs)]


# ----------------------------------------------------------------------------- the baseline


def bear_mass_rule(bear_mass: np.ndarray, bear_logits3: np.ndarray, tau: float) -> np.ndarray:
    """The untrained ImageNet head as a classifier: a bear when the ImageNet probability mass of
    the bear classes is at least `tau` (then the best of the three), else `other`; never unsure.
    Returns one-hot 4-way rows so the scoring code treats it like any model."""
    out = np.zeros((len(bear_mass), len(LABELS)))
    best = np.argmax(bear_logits3, axis=1)
    for i, (m, b) in enumerate(zip(bear_mass, best)):
        out[i, b if m >= tau else LABELS.index("other")] = 1.0
    return out


def choose_bear_mass_tau(valid_mass: np.ndarray, valid_is_bear: np.ndarray,
                         keep: float = 0.99) -> float:
    """The largest threshold that still keeps `keep` of the validation bears (chosen on
    validation only): the baseline gets the bear-keeping target, then rejects what it can."""
    bears = np.sort(valid_mass[valid_is_bear])
    k = int(math.floor((1 - keep) * len(bears)))
    return float(bears[k]) if len(bears) else 0.01


# ----------------------------------------------------------------------------- reporting


def table(models: dict[str, dict]) -> str:
    """A markdown table: one column per model, one row per headline number and kind."""
    names = list(models)
    head = "| | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"

    def cell(r: dict | None) -> str:
        if not r or r.get("n", 0) == 0:
            return "-"
        return f"{100 * r['rate']:.1f}% ({r['good']}/{r['n']})"

    lines = []
    for key, title in (("bears_right_and_sure", "bears named right and sure"),
                       ("bears_lost", "bears `other`/`unsure` (lower is better)"),
                       ("nonbears_rejected", "non-bears `other`/`unsure`"),
                       ("cats_rejected", "cats `other`/`unsure`"),
                       ("dogs_rejected", "dogs `other`/`unsure`")):
        lines.append(f"| **{title}** | " + " | ".join(cell(models[n].get(key)) for n in names)
                     + " |")
    kinds: list[str] = []
    for n in names:
        kinds += [k for k in models[n].get("by_kind", {}) if k not in kinds]
    for k in kinds:
        what = "right and sure" if "bears" in k and "plush" not in k else "`other`/`unsure`"
        lines.append(f"| {k}: {what} | "
                     + " | ".join(cell(models[n].get("by_kind", {}).get(k)) for n in names) + " |")
    lines.append("| calibration error (ECE) | "
                 + " | ".join(str(models[n].get("ece", "-")) for n in names) + " |")
    return head + "\n".join(lines) + "\n"


def worst(rows: Iterable[Row], n: int = 12) -> list[Row]:
    """The most confident mistakes first."""
    return sorted((r for r in rows if r.mistake), key=lambda r: -r.confidence)[:n]


# ----------------------------------------------------------------------------- the served path


def served_probs(model_path, items: Sequence[Item], engine: str = "auto",  # noqa: ANN001
                 batch: int = 32) -> tuple[np.ndarray, float, str]:
    """4-way probabilities for `items` from a model file, through teddywatch's own decoder and
    engine (what `teddywatch classify` does). Returns (probs in LABELS order, the model's unsure
    threshold, its model id)."""
    from pathlib import Path

    from teddywatch.engines import load_engine
    from teddywatch.imaging import decode

    eng = load_engine(Path(model_path), engine)
    if tuple(eng.labels) != LABELS:
        raise ValueError(f"{model_path}: labels {eng.labels}, expected {LABELS}")
    out = np.zeros((len(items), len(LABELS)))
    try:
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            preds = eng.predict([decode(it.path, eng.decode_size) for it in chunk])
            for j, p in enumerate(preds):
                for lab, prob in p.top:
                    out[i + j, LABELS.index(lab)] = prob
    finally:
        eng.close()
    return out, float(eng.default_threshold), eng.model_id
