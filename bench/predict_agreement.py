"""The served default model against fast.ai's own `learn.predict`, file by file, on held-out photos.

    .venv/bin/python bench/predict_agreement.py [--data ../shared/data] [--n 300]

A seeded sample of the test split (teddywatch/training/data.py); `learn.predict(file)` on
models/bears.pkl is the reference; models/bears.onnx and bears-int8.onnx run through teddywatch's
own decoder and onnx engine. Prints label agreement and the largest probability difference.
"""
import argparse
import random
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from teddywatch.training import data, judge  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args()
    if not (a.data / "MANIFEST.tsv").is_file():
        print(f"skipped: {a.data}/MANIFEST.tsv not found")
        return 0
    from fastai.vision.all import load_learner

    test = [i for i in data.load(a.data) if i.split == "test"]
    sample = random.Random(7).sample(test, min(a.n, len(test)))
    learn = load_learner(ROOT / "models" / "bears.pkl", cpu=True)
    with learn.no_bar():
        ref = np.array([[float(v) for v in learn.predict(it.path)[2]] for it in sample])
    for name in ("bears.onnx", "bears-int8.onnx"):
        got, _, _ = judge.served_probs(ROOT / "models" / name, sample)
        print(f"{name}: labels agree with learn.predict on {(got.argmax(1) == ref.argmax(1)).mean():.2%}"
              f" of {len(sample)}; largest probability difference "
              f"{np.abs(got - ref).max():.4f}, mean {np.abs(got - ref).mean():.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
