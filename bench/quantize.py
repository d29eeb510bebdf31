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
#: The backbone's ops are quantised: convolutions, their ReLU6 (a Clip, folded into the
#: quantisation range), the residual Adds, the "same" padding and the pooling, so activations
#: stay uint8 from end to end. The stem Conv, the classifier (Gemm) and everything after it
#: (the grouped log-sum-exp head, softmax) stay float: see float_nodes().
OPS = ("Conv", "Clip", "Relu", "Add", "Pad", "GlobalAveragePool")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "data"))

from teddywatch.engines import file_sha256  # noqa: E402


def _model_quality():
    spec = importlib.util.spec_from_file_location("model_quality", ROOT / "bench" / "model_quality.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader
    spec.loader.exec_module(module)
    return module


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


def fold_same_padding(src: Path, dst: Path, height: int, width: int) -> int:
    """Fold timm's "same" padding (Pad -> Conv, pads computed from the input shape) into Conv.

    For the model's fixed input size the pad amounts are constants: run the graph once to read
    them, write them into the Conv's own `pads`, and drop the Pad. Same arithmetic, but the
    convolutions then run back to back (no float island around a Pad in the int8 graph, no
    layout reorders in the fp32 one). Returns the number of Pads folded.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model = onnx.load(str(src))
    graph = model.graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    candidates = []
    for node in graph.node:
        if node.op_type != "Pad" or len(node.input) < 2:
            continue
        mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
        users = consumers.get(node.output[0], [])
        if mode != b"constant" or len(users) != 1 or users[0].op_type != "Conv":
            continue
        conv = users[0]
        if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in conv.attribute):
            continue
        if any(a.name == "pads" and any(a.ints) for a in conv.attribute):
            continue
        candidates.append((node, conv))
    if not candidates:
        onnx.save(model, str(dst))
        return 0
    # Read the pad amounts (and constant values) for the fixed input size.
    probe = onnx.load(str(src))
    wanted = []
    for pad, _ in candidates:
        wanted += [t for t in pad.input[1:3] if t]
    existing = {o.name for o in probe.graph.output}
    for name in wanted:
        if name not in existing:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.zeros((1, 3, height, width), np.float32)}
    values = dict(zip([o.name for o in session.get_outputs()],
                      session.run([o.name for o in session.get_outputs()], feed)))
    folded = 0
    for pad, conv in candidates:
        amounts = [int(v) for v in values[pad.input[1]]]
        fill = float(values[pad.input[2]]) if len(pad.input) > 2 and pad.input[2] else 0.0
        rank = len(amounts) // 2
        begin, end = amounts[:rank], amounts[rank:]
        if fill != 0.0 or rank != 4 or begin[:2] != [0, 0] or end[:2] != [0, 0] \
                or min(amounts) < 0:
            continue
        for attr in list(conv.attribute):
            if attr.name == "pads":
                conv.attribute.remove(attr)
        conv.attribute.append(helper.make_attribute("pads", begin[2:] + end[2:]))
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        folded += 1
    _drop_dead_nodes(graph)
    onnx.save(model, str(dst))
    return folded


def _drop_dead_nodes(graph) -> None:  # noqa: ANN001
    """Remove nodes (and initializers) that no graph output depends on any more."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    dead = [n for n in graph.node if n not in keep]
    for node in dead:
        graph.node.remove(node)
    for init in [i for i in graph.initializer if i.name not in needed]:
        graph.initializer.remove(init)


def float_nodes(model_path: Path) -> list[str]:
    """Nodes kept float: the stem Conv that reads the image, and the classifier head.

    The stem sees the normalised pixels (about -2..2.6) directly: 8 bits there cost the most
    accuracy for the least compute (3 input channels). The head is the last Gemm/MatMul and
    everything downstream of it (the grouped log-sum-exp, softmax).
    """
    import onnx

    graph = onnx.load(str(model_path)).graph
    image = graph.input[0].name
    names = [n.name for n in graph.node if n.op_type == "Conv" and image in n.input]
    last = [n for n in graph.node if n.op_type in ("Gemm", "MatMul")][-1:]
    tainted = {t for n in last for t in n.output}
    names += [n.name for n in last]
    for node in graph.node:
        if any(t in tainted for t in node.input):
            tainted.update(node.output)
            names.append(node.name)
    return names


def quantize(fp32: Path, out: Path, reader: Calibration, size: tuple[int, int] = (224, 224),
             **overrides) -> dict:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        unpadded = Path(tmp) / "unpadded.onnx"
        folded = fold_same_padding(fp32, unpadded, *size)
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(str(unpadded), str(prepped), skip_symbolic_shape=False)
        excluded = float_nodes(prepped) + list(overrides.pop("extra_exclude", ()))
        settings = dict(quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=list(OPS), nodes_to_exclude=excluded,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        settings.update(overrides)
        quantize_static(str(prepped), str(out), reader, **settings)
    return {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "per_channel": True, "weights": "int8 (symmetric)", "activations": "uint8",
            "calibration_method": "MinMax", "ops": list(OPS),
            "same_padding_folded_into_conv": folded,
            "fixed_input_size": list(size), "float_nodes": len(excluded),
            "float_part": "the stem Conv (reads the image) and the classifier Gemm + head"}


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
    neg_dir, manifest, tmp = mq.load_negatives(a.negatives)

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
    info = quantize(a.model, out, reader,
                    size=(fp32_engine.preprocess.height, fp32_engine.preprocess.width))
    print(f"quantised {a.model.name} -> {out.name} ({out.stat().st_size / 1e6:.1f} MB) in "
          f"{time.perf_counter() - t:.0f} s, calibrated on {len(calib)} training images")

    meta = read_metadata(a.model)
    int8_meta = copy.deepcopy(meta)
    int8_meta.update({"name": f"{meta.get('name', a.model.stem)}-int8", "sha256": file_sha256(out),
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
