"""Static int8 quantisation of the bear model (QDQ, per-channel), checked on held-out images.

    python bench/quantize.py [--data ../shared/data] [--model models/bears.onnx]
        [--negatives DIR] [--out models/bears-int8.onnx]

* Calibration: training-split bears (`teddywatch.training.bear_split(...) == "train"`) and the
  `train` pool of non-bear pictures from `bench/data/make_negatives.py` -- never the report set.
  Images go through teddywatch's own decode + preprocessing, exactly as at run time.
* Quantisation: onnxruntime.quantization.quantize_static, QDQ format, per-channel int8 weights,
  uint8 activations, MinMax calibration; only Conv/Gemm/MatMul are quantised, so the grouped
  head (gathers, log-sum-exp, softmax) stays float.
* Check: the report set of bench/model_quality.py (held-out bears + the `report` pool of
  non-bears), scored with its `score()` at the model's unsure threshold, for the fp32 and the
  int8 model, plus their label agreement.
* Writes `models/bears-int8.onnx` and `models/bears-int8.json` (the fp32 metadata with its own
  sha256, name, `quantization` and `scores.report`), and bench/results/quantize.json.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Only the convolutions are quantised (nearly all the compute); the classifier Gemm and the
#: grouped head stay float, where 8 bits would blur the logits the labels are summed from.
OPS = ("Conv",)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "data"))


def _model_quality():
    spec = importlib.util.spec_from_file_location("model_quality", ROOT / "bench" / "model_quality.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader
    spec.loader.exec_module(module)
    return module


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Calibration:
    """onnxruntime CalibrationDataReader over files, preprocessed as teddywatch does."""

    def __init__(self, engine, files: list[Path], batch: int = 16) -> None:  # noqa: ANN001
        from teddywatch.imaging import decode

        self.batches = []
        pre = engine.preprocess
        for start in range(0, len(files), batch):
            part = files[start:start + batch]
            x = np.empty((len(part), 3, pre.height, pre.width), dtype=np.float32)
            for i, f in enumerate(part):
                pre.to_array(decode(f, engine.decode_size), x[i])
            self.batches.append({engine.input_name: x})
        self._it = iter(self.batches)

    def get_next(self):  # noqa: ANN201
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.batches)


def quantize(fp32: Path, out: Path, reader: Calibration) -> dict:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=False)
        settings = dict(quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=list(OPS),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        quantize_static(str(prepped), str(out), reader, **settings)
    return {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "per_channel": True, "weights": "int8 (symmetric)", "activations": "uint8",
            "calibration_method": "MinMax", "ops": list(OPS)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bears.onnx")
    ap.add_argument("--negatives", type=Path, default=None,
                    help="output folder of make_negatives.py (built in a temp folder if absent)")
    ap.add_argument("--out", type=Path, default=None, help="default: MODEL-int8.onnx")
    ap.add_argument("--calib-bears", type=int, default=240)
    ap.add_argument("--calib-negatives", type=int, default=80)
    ap.add_argument("--report", type=Path, default=ROOT / "bench" / "results" / "quantize.json")
    a = ap.parse_args(argv)
    out = a.out or a.model.with_name(a.model.stem + "-int8.onnx")

    from teddywatch.engines.onnx import OnnxEngine, read_metadata
    from teddywatch.training import bear_split, labelled_items

    mq = _model_quality()
    tmp = None
    neg_dir = a.negatives
    if neg_dir is None:
        import make_negatives

        tmp = tempfile.TemporaryDirectory()
        neg_dir = Path(tmp.name)
        make_negatives.build(neg_dir)
    manifest = json.loads((neg_dir / "manifest.json").read_text())

    all_bears = labelled_items(a.data / "bears")
    rng = random.Random(0)
    train_bears = [p for p, _ in all_bears if bear_split(p) == "train"]
    train_negs = [neg_dir / m["file"] for m in manifest["files"] if m["pool"] == "train"]
    calib = (rng.sample(train_bears, min(a.calib_bears, len(train_bears)))
             + rng.sample(train_negs, min(a.calib_negatives, len(train_negs))))
    rng.shuffle(calib)
    report_items = [(p, lab, "bears:" + lab) for p, lab in all_bears
                    if bear_split(p) == "holdout"]
    report_items += [(neg_dir / m["file"], "other", m["source"]) for m in manifest["files"]
                     if m["pool"] == "report"]
    assert not set(calib) & {p for p, _, _ in report_items}, "calibration overlaps the report set"

    fp32_engine = OnnxEngine(a.model)
    t = time.perf_counter()
    reader = Calibration(fp32_engine, calib)
    info = quantize(a.model, out, reader)
    print(f"quantised {a.model.name} -> {out.name} ({out.stat().st_size / 1e6:.1f} MB) in "
          f"{time.perf_counter() - t:.0f} s, calibrated on {len(calib)} training images")

    meta = read_metadata(a.model)
    int8_meta = copy.deepcopy(meta)
    int8_meta.update({"name": f"{meta.get('name', a.model.stem)}-int8", "sha256": sha256(out),
                      "fp32_sha256": meta.get("sha256")})
    info["calibration_set"] = {
        "bears": sum(1 for p in calib if p in set(train_bears)),
        "negatives": sum(1 for p in calib if p in set(train_negs)),
        "rule": "training split only: bear_split(file) == 'train' and make_negatives pool "
                "'train'; seeded sample (random.Random(0))"}
    int8_meta["quantization"] = info
    out.with_suffix(".json").write_text(json.dumps(int8_meta, indent=1) + "\n")

    # --- accuracy on the report set, fp32 vs int8 --------------------------------------------
    threshold = float(meta.get("unsure_threshold", 0.5))
    int8_engine = OnnxEngine(out)
    rows32 = mq.run_engine(fp32_engine, report_items)
    rows8 = mq.run_engine(int8_engine, report_items)
    s32, s8 = mq.score(rows32, threshold), mq.score(rows8, threshold)
    agree = sum(x["label"] == y["label"] for x, y in zip(rows32, rows8)) / len(rows32)
    status = lambda r: r["label"] if r["conf"] >= threshold else "unsure"  # noqa: E731
    agree_status = sum(status(x) == status(y) for x, y in zip(rows32, rows8)) / len(rows32)
    max_diff = max(abs(x["probs"][k] - y["probs"][k]) for x, y in zip(rows32, rows8)
                   for k in x["probs"])
    keep = ("bears", "negatives", "threshold")
    report = {
        "set": dict(Counter(t for _, t, _ in report_items)),
        "bear_split": "held-out 25% of shared bears by file-name hash (bear_split)",
        "negatives": "report pool of bench/data/make_negatives.py "
                     f"(skipped sources: {manifest['skipped_sources']})",
        "int8": {k: s8[k] for k in keep if k in s8},
        "fp32": {k: s32[k] for k in keep if k in s32},
        "label_agreement_with_fp32": round(agree, 4),
        "label_or_unsure_agreement_with_fp32": round(agree_status, 4),
        "max_probability_difference": round(max_diff, 4),
    }
    int8_meta.setdefault("scores", {})["report"] = report
    out.with_suffix(".json").write_text(json.dumps(int8_meta, indent=1) + "\n")
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text(json.dumps({**report, "failures_int8": s8["failures"],
                                    "failures_fp32": s32["failures"],
                                    "quantization": info}, indent=1) + "\n")

    def line(name: str, s: dict) -> str:
        b, n = s.get("bears", {}), s.get("negatives", {})
        return (f"{name:6s} bears top1 {b.get('top1_right')}  right&sure "
                f"{b.get('named_right_and_sure')}  bears other/unsure {b.get('other_or_unsure')}"
                f"  non-bears other/unsure {n.get('other_or_unsure')}")

    print(f"report set {report['set']}, threshold {threshold}")
    print(line("fp32", s32))
    print(line("int8", s8))
    print(f"label agreement int8 vs fp32: {agree:.4f} (with unsure: {agree_status:.4f}); "
          f"max probability difference {max_diff:.3f}")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
