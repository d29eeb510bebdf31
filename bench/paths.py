"""The measured programs that are not `teddywatch` itself; bench/run.py starts each in its own process.

    python bench/paths.py peer     LEARNER.pkl FILE...   # load_learner + learn.predict per image
    python bench/paths.py getpreds LEARNER.pkl N FILE... # learn.get_preds on a test_dl, N at a time
    python bench/paths.py ceiling  MODEL.onnx FILE...    # bare onnxruntime forward on tensors

`peer` and `getpreds` print one line per image (label) as soon as it is known, flushed, so the
parent can timestamp rows exactly as it does for `teddywatch classify`. `ceiling` prints one JSON
object. Nothing here is imported by teddywatch.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def peer(learner: str, files: list[str]) -> None:
    """What the fast.ai course (chapter 2) and its desktop ports do, image by image."""
    import warnings

    warnings.simplefilter("ignore")
    from fastai.vision.all import load_learner

    learn = load_learner(learner)
    for f in files:
        label, _, probs = learn.predict(f)
        print(f"{f},{label},{float(probs.max()):.4f}", flush=True)


def getpreds(learner: str, chunk: int, files: list[str]) -> None:
    """fast.ai's own batched inference: `learn.get_preds(dl=learn.dls.test_dl(files))`.

    Run on `chunk` files at a time so the parent sees rows at the N and 2N marks; each call is
    the documented batched path (default batch size, the learner's own transforms).
    """
    import warnings

    warnings.simplefilter("ignore")
    from fastai.vision.all import load_learner

    learn = load_learner(learner)
    vocab = learn.dls.vocab
    for start in range(0, len(files), chunk):
        part = files[start:start + chunk]
        dl = learn.dls.test_dl(part)
        with learn.no_bar():
            probs, _ = learn.get_preds(dl=dl)
        for f, row in zip(part, probs):
            print(f"{f},{vocab[int(row.argmax())]},{float(row.max()):.4f}", flush=True)


def ceiling(model: str, files: list[str], batch_sizes: list[int], threads: int) -> None:
    """onnxruntime's forward pass alone: tensors decoded and preprocessed before the clock starts."""
    import numpy as np

    from teddywatch.engines.onnx import OnnxEngine
    from teddywatch.imaging import decode

    engine = OnnxEngine(Path(model), threads=threads)
    pre = engine.preprocess
    x = np.empty((len(files), 3, pre.height, pre.width), dtype=np.float32)
    for i, f in enumerate(files):
        pre.to_array(decode(f, engine.decode_size), x[i])
    run, name = engine.session.run, engine.input_name
    rates: dict[int, float] = {}
    for bs in batch_sizes:
        run(None, {name: x[:bs]})  # warm-up: allocations for this shape
        best = 0.0
        for _ in range(2):
            t = time.perf_counter()
            for s in range(0, len(x) - len(x) % bs or len(x), bs):
                run(None, {name: x[s:s + bs]})
            done = (len(x) // bs) * bs or len(x)
            best = max(best, done / (time.perf_counter() - t))
        rates[bs] = round(best, 2)
    top = max(rates, key=rates.get)
    print(json.dumps({"rates": rates, "best_batch": top, "best_rate": rates[top],
                      "threads": threads}), flush=True)


def main(argv: list[str]) -> None:
    mode, model, *rest = argv
    if mode == "peer":
        peer(model, rest)
    elif mode == "getpreds":
        getpreds(model, int(rest[0]), rest[1:])
    elif mode == "ceiling":
        sizes = [int(s) for s in rest[0].split(",")]
        ceiling(model, rest[2:], sizes, int(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
