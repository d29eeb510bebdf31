"""The pictures shipped beside a model, as the model sees them, for `teddywatch learn`:

* `bears-int8.anchors.npz`: what learning must not forget while it fits the user's corrections
  (teach/adapter.py), 800 pictures of the training split, half bears, half not;
* `bears-int8.checkset.npz`: the check a learned model must pass before it is used: it may not
  answer fewer of these right than the shipped model (teach/learn.py), 400 pictures of the
  valid split, half bears.

Neither holds a picture of the test split the model card is scored on. For each picture: the
model's features and probabilities, computed through teddywatch's own decoder and engine exactly
as served, and the true label. Features, not the photos: the web photos' licences do not allow
shipping them, and the check then costs milliseconds.

    python -m teddywatch.training.anchors --data ../shared/data models/bears-int8.onnx models/bears.onnx
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Sequence

import numpy as np

from teddywatch.teach.adapter import Anchors, anchors_path, checkset_path
from teddywatch.teach.learn import compute_features

PER_SIDE = 400  # bears and non-bears each: 800 anchors, 0.8-1.4 MB per model
CHECK_PER_SIDE = 200


def make_anchors(model: Path, items: Sequence, per_side: int = PER_SIDE) -> Anchors:  # noqa: ANN001
    """Anchors for `model` from data.Items (their split is not checked here)."""
    from teddywatch.engines.onnx import OnnxEngine

    engine = OnnxEngine(model)
    rng = random.Random(0)
    bears = [it for it in items if it.label != "other"]
    others = [it for it in items if it.label == "other"]
    chosen = rng.sample(bears, min(per_side, len(bears))) + rng.sample(others, min(per_side,
                                                                                    len(others)))
    probabilities, features = compute_features(engine, [it.path for it in chosen])
    labels = np.array([engine.labels.index(it.label) for it in chosen])
    return Anchors(features, probabilities, labels)


def write_sets(model: Path, items: Sequence) -> None:  # noqa: ANN001
    """Both files beside `model`, from data.Items (train split: anchors; valid split: check)."""
    for path, split, per_side in ((anchors_path(model), "train", PER_SIDE),
                                  (checkset_path(model), "valid", CHECK_PER_SIDE)):
        chosen = make_anchors(model, [it for it in items if it.split == split], per_side)
        chosen.save(path)
        print(f"{path}: {len(chosen.labels)} pictures of the {split} split", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    from teddywatch.training import data

    parser = argparse.ArgumentParser(prog="python -m teddywatch.training.anchors",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("models", nargs="+", type=Path)
    args = parser.parse_args(argv)
    items = data.load(args.data)
    for model in args.models:
        write_sets(model, items)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
