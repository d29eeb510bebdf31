"""Build the default bears model from the shared data: `make model`.

    python -m teddywatch.training.default_model [--data ../shared/data] [--out models]

1. Split the data by source (`data.py`); the test split is never read here.
2. Features of the frozen EfficientNet-Lite0 body: the served view of every train/valid picture
   and four augmented views (fast.ai's training pipeline) of each (`features.py`, cached).
3. Choose the head's variant by 5-fold cross-validation over the train and valid pictures
   (`VARIANTS`; folds by file-name hash), then fit the temperature and the unsure threshold on
   the same out-of-fold answers.
4. Fit the chosen head on all train and valid pictures with fast.ai (`head.py`), put it on the
   body (`BearNet`), export the learner (`bears.pkl`), its ONNX model and metadata.
5. Quantise to int8, calibrated on training-split pictures (`quantize.py`).

The judge (`bench/model_quality.py`) then scores the models on the held-out test split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from teddywatch.imaging import DECODE_MARGIN
from teddywatch.training import data
from teddywatch.training.data import LABELS
from teddywatch.training.head import HeadConfig
from teddywatch.training.late import LateConfig

NAME = "bears"
SIZE = 224
VIEWS = 4
FOLDS = 5
THRESHOLD_GRID = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95
#: At most this share of cross-validated bears may fall under the unsure threshold.
MAX_BEARS_UNSURE = 0.005
#: The variants cross-validation chooses between; the rule is `_better`.
VARIANTS = {
    "lwf1-l2sp": HeadConfig(lr=1e-3, lwf=1.0, l2sp=1e-3, epochs=6),
    "lwf0.3": HeadConfig(lr=3e-3, lwf=0.3, l2sp=0.0, epochs=6),
    "lwf0.3-e10": HeadConfig(lr=3e-3, lwf=0.3, l2sp=0.0, epochs=10),
    "lwf0.3-e10-ow2": HeadConfig(lr=3e-3, lwf=0.3, l2sp=0.0, epochs=10, other_weight=2.0),
    "lwf1-e10": HeadConfig(lr=3e-3, lwf=1.0, l2sp=0.0, epochs=10),
    "no-lwf-e10": HeadConfig(lr=3e-3, lwf=0.0, l2sp=0.0, epochs=10),
    # the last block (blocks[6]) and the 1x1 head convolution train too, at a gentler rate
    "late6-lwf0.3-e10-ow2": LateConfig(split=6, body_lr=1e-4, lr=3e-3, lwf=0.3, l2sp=0.0,
                                       epochs=10, other_weight=2.0),
    "late6-lwf1-e10-ow2": LateConfig(split=6, body_lr=3e-4, lr=3e-3, lwf=1.0, l2sp=0.0,
                                     epochs=10, other_weight=2.0),
}


def _fold(item: data.Item) -> int:
    return int(hashlib.sha256(f"fold:{item.path.name}".encode()).hexdigest()[:8], 16) % FOLDS


def _choose_threshold(probs: np.ndarray, is_bear: np.ndarray) -> float:
    """The highest grid threshold under which at most MAX_BEARS_UNSURE of the bears fall."""
    conf = probs[is_bear].max(1)
    ok = [t for t in THRESHOLD_GRID if (conf < t).mean() <= MAX_BEARS_UNSURE]
    return max(ok) if ok else THRESHOLD_GRID[0]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class Features:
    """Cached body features of the pictures the model may learn from (train + valid)."""

    def __init__(self, items: Sequence[data.Item], progress: bool = True) -> None:
        from teddywatch.training import features
        from teddywatch.training.bearnet import build_backbone

        self.backbone = build_backbone(pretrained=True).eval()
        self.classifier = self.backbone.get_classifier()
        body = features.pooled_body(self.backbone)
        self.items = list(items)
        paths = [it.path for it in self.items]
        self.served = features.compute(body, paths, SIZE, tag="learn", progress=progress)
        self.views = features.compute(body, paths, SIZE, views=VIEWS, tag="learn",
                                      progress=progress)
        self.y = np.array([LABELS.index(it.label) for it in self.items])
        self.is_bear = np.array([it.is_bear for it in self.items])
        self.progress = progress
        self._trunks: dict[int, tuple] = {}

    def trunk(self, split: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(served activations, their teacher logits, augmented views, their teacher logits)
        of the frozen trunk blocks[:split], for `late` variants; cached on disk and here."""
        from teddywatch.training import features

        if split not in self._trunks:
            paths = [it.path for it in self.items]
            served = features.compute_trunk(self.backbone, paths, split, SIZE, tag="learn",
                                            progress=self.progress)
            views = features.compute_trunk(self.backbone, paths, split, SIZE, views=VIEWS,
                                           tag="learn", progress=self.progress)
            self._trunks[split] = (*served, *views)
        return self._trunks[split]


class Fitted:
    """One trained variant: its grouping, and ImageNet logits for pictures by index."""

    def __init__(self, f: Features, cfg: HeadConfig, fit_on: np.ndarray) -> None:
        from teddywatch.training import head as H
        from teddywatch.training import late

        self.f, self.cfg = f, cfg
        if isinstance(cfg, late.LateConfig):
            _, _, acts, teacher = f.trunk(cfg.split)
            self.model = late.fit(f.backbone, acts[:, fit_on], teacher[:, fit_on],
                                  f.y[fit_on], cfg)
        else:
            self.model = H.fit(f.classifier, f.views[:, fit_on], f.y[fit_on],
                               f.served[fit_on[:64]], f.y[fit_on[:64]], cfg)
        self.grouping = self.model.grouped

    def logits(self, idx: np.ndarray) -> np.ndarray:
        """The trained model's 1000 ImageNet logits for the served view of pictures `idx`."""
        from teddywatch.training import head as H
        from teddywatch.training import late

        if isinstance(self.cfg, late.LateConfig):
            return late.imagenet_logits(self.model, self.f.trunk(self.cfg.split)[0][idx])
        return H.imagenet_logits(self.model, self.f.served[idx])

    def assemble(self, temperature: float):  # noqa: ANN201
        from teddywatch.training import head as H
        from teddywatch.training import late

        if isinstance(self.cfg, late.LateConfig):
            return late.assemble(self.f.backbone, self.model, self.cfg.split, temperature)
        return H.assemble(self.f.backbone, self.model, temperature)


def cross_validate(f: Features, cfg: HeadConfig) -> dict:
    """Out-of-fold answers of `cfg`: the temperature, the threshold and the judge's scores."""
    from teddywatch.training import head as H
    from teddywatch.training import judge

    fold = np.array([_fold(it) for it in f.items])
    parts = []
    for k in range(FOLDS):
        fit_on, held = np.where(fold != k)[0], np.where(fold == k)[0]
        fitted = Fitted(f, cfg, fit_on)
        parts.append((fitted.grouping, fitted.logits(held), f.y[held], held))
    temperature = H.fit_temperature([(g, z, y) for g, z, y, _ in parts])
    probs = np.zeros((len(f.items), len(LABELS)))
    for g, z, _, held in parts:
        probs[held] = _softmax(H.grouped_at(g, z, temperature))
    threshold = _choose_threshold(probs, f.is_bear)
    scores = judge.score(judge.rows_from_probs(f.items, probs, threshold))
    return {"temperature": round(temperature, 4), "threshold": threshold, "scores": scores}


def _headline(s: dict) -> dict:
    keys = ("bears_right_and_sure", "bears_lost", "nonbears_rejected")
    return {k: s[k]["rate"] for k in keys} | {"ece": s["ece"], "balanced": round(balanced(s), 4)}


def balanced(scores: dict) -> float:
    """The variant rule, fixed before the test split is scored: the mean of bears named right
    and sure, bears kept (not `other`/`unsure`) and non-bears rejected, out of fold."""
    return (scores["bears_right_and_sure"]["rate"] + 1 - scores["bears_lost"]["rate"]
            + scores["nonbears_rejected"]["rate"]) / 3


def _better(a: dict, b: dict) -> bool:
    return balanced(a["scores"]) > balanced(b["scores"])


def check_assembly(paths: Sequence[Path], expected: np.ndarray, net) -> None:  # noqa: ANN001
    """The assembled network, run on pictures, gives the probabilities its parts gave on their
    cached features (`expected`); raises RuntimeError if not."""
    import torch

    from teddywatch.training import features

    paths = list(paths)
    dl = features.image_dls(paths, ["other"] * len(paths), SIZE).test_dl(paths, num_workers=0)
    with torch.no_grad():
        via_net = torch.softmax(torch.cat([net(b[0]) for b in dl]), 1).numpy()
    diff = float(np.abs(via_net - expected).max())
    if diff > 2e-3:
        raise RuntimeError(f"the assembled network differs from its parts by {diff:.2e}")


def export_learner(f: Features, net, out_dir: Path, info: dict) -> Path:  # noqa: ANN001
    """A fast.ai Learner around the assembled network, exported as `<out>/bears.pkl`.

    Its DataLoaders carry the served preprocessing (Resize 224, squish; ImageNet Normalize),
    which `teddywatch export` reads into the ONNX metadata and the fastai engine applies."""
    import torch
    from fastai.vision.all import (CategoryBlock, CrossEntropyLossFlat, ImageDataLoaders, Learner,
                                   Normalize, Resize, ResizeMethod, accuracy, imagenet_stats)

    dls = ImageDataLoaders.from_lists(
        Path("/"), [it.path for it in f.items], [it.label for it in f.items], valid_pct=0.2,
        seed=0, y_block=CategoryBlock(vocab=list(LABELS), sort=False),
        item_tfms=Resize(SIZE, method=ResizeMethod.Squish),
        batch_tfms=[Normalize.from_stats(*imagenet_stats)], bs=32, num_workers=0,
        device=torch.device("cpu"))
    learn = Learner(dls, net, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    learn.teddywatch = info  # travels inside the pickle; export() writes it into the metadata
    out_dir.mkdir(parents=True, exist_ok=True)
    pkl = (out_dir / f"{NAME}.pkl").absolute()
    learn.export(pkl)
    return pkl


def quantize_int8(fp32: Path, calibration: Sequence[Path]) -> Path:
    """`<name>-int8.onnx` + metadata next to `fp32`, calibrated on `calibration`."""
    import copy

    from teddywatch.engines import file_sha256
    from teddywatch.engines.onnx import OnnxEngine, read_metadata
    from teddywatch.training import quantize
    from teddywatch.training.features_output import add_features_output

    from onnxruntime.quantization import CalibrationMethod

    out = fp32.with_name(f"{fp32.stem}-int8.onnx")
    engine = OnnxEngine(fp32)
    reader = quantize.Calibration(engine, list(calibration))
    # Percentile (99.999%) ranges: chosen on the valid split, where its labels agreed with fp32
    # on 474 of 474 pictures (MinMax on the same 320 pictures: 473; see models/README.md).
    info = quantize.quantize(fp32, out, reader,
                             size=(engine.preprocess.height, engine.preprocess.width),
                             calibrate_method=CalibrationMethod.Percentile)
    add_features_output(out)  # kept by the quantiser already; made sure of here
    info["calibration_method"] = "Percentile (99.999)"
    info["calibration_set"] = {"images": len(calibration),
                               "rule": "training split only (data.split_of == 'train'), a "
                                       "seeded sample (random.Random(0))"}
    meta = copy.deepcopy(read_metadata(fp32))
    meta.update({"name": f"{meta.get('name', fp32.stem)}-int8", "sha256": file_sha256(out),
                 "fp32_sha256": meta.get("sha256"), "quantization": info})
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"quantised {fp32.name} -> {out.name} ({out.stat().st_size / 1e6:.1f} MB), "
          f"calibrated on {len(calibration)} training pictures", flush=True)
    return out


def build(data_dir: Path, out_dir: Path, variants: dict[str, HeadConfig] = VARIANTS,
          progress: bool = True) -> dict:
    """Steps 1-5 of the module docstring. Returns what went into the metadata."""
    import torch

    from teddywatch.training import head as H
    from teddywatch.training.anchors import write_sets
    from teddywatch.training.export import export

    t0 = time.time()
    items = data.load(data_dir)
    learn_items = [it for it in items if it.split != "test"]
    f = Features(learn_items, progress=progress)

    cv: dict[str, dict] = {}
    best = None
    for name, cfg in variants.items():
        t = time.time()
        cv[name] = cross_validate(f, cfg)
        print(f"cross-validated {name:14s} {_headline(cv[name]['scores'])} "
              f"T={cv[name]['temperature']} threshold={cv[name]['threshold']} "
              f"({time.time() - t:.0f} s)", flush=True)
        if best is None or _better(cv[name], cv[best]):
            best = name
    assert best is not None
    chosen = cv[best]
    print(f"chosen: {best}", flush=True)

    fitted = Fitted(f, variants[best], np.arange(len(f.items)))
    t = chosen["temperature"]
    net = fitted.assemble(t)
    probe = np.arange(8)
    check_assembly([f.items[i].path for i in probe],
                   _softmax(H.grouped_at(fitted.grouping, fitted.logits(probe), t)), net)

    import fastai

    info = {
        "name": NAME,
        "arch": "efficientnet_lite0+grouped-imagenet-head (" + (
            f"blocks[:{variants[best].split}] frozen, the rest fine-tuned"
            if isinstance(variants[best], LateConfig) else "body frozen, classifier fine-tuned")
            + " with LwF on cached activations)",
        "unsure_threshold": chosen["threshold"],
        "training": {
            "data": str(data_dir), "split": data.__doc__.split("\n\n")[1].strip(),
            "counts": data.summary(items), "variant": best, "config": asdict(variants[best]),
            "views": VIEWS, "size": SIZE, "folds": FOLDS,
            "temperature": chosen["temperature"],
            "threshold_rule": f"highest of {THRESHOLD_GRID[0]}..{THRESHOLD_GRID[-1]} with at "
                              f"most {MAX_BEARS_UNSURE:.1%} of cross-validated bears unsure",
            "seconds": round(time.time() - t0, 1), "fastai_version": fastai.__version__,
            "torch_version": torch.__version__,
        },
        "scores": {"cross_validation": {n: {"temperature": v["temperature"],
                                            "threshold": v["threshold"],
                                            **_headline(v["scores"])} for n, v in cv.items()}},
    }
    pkl = export_learner(f, net, Path(out_dir), info)
    train_items = [it for it in learn_items if it.split == "train"]
    checks = [it.path for it in random.Random(1).sample(train_items, 8)]
    # Its decode margin was measured on real photos, web and camera (bench/decode_margin.py:
    # at most 0.0067 from learn.predict at imaging.DECODE_MARGIN, no label changed), where the
    # export's worst-case bound would ask for 8x and slow camera photos down.
    rep = export(pkl, Path(out_dir) / f"{NAME}.onnx", checks, decode_margin=DECODE_MARGIN)
    calib = random.Random(0).sample([it.path for it in train_items], 320)
    int8 = quantize_int8(rep.onnx, calib)
    for model in (rep.onnx, int8):  # what `teddywatch learn` keeps and checks (teach/)
        write_sets(model, learn_items)
    print(f"built {NAME} in {time.time() - t0:.0f} s: {pkl}, {rep.onnx}", flush=True)
    return info


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m teddywatch.training.default_model",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("models"))
    ap.add_argument("--variant", choices=sorted(VARIANTS), action="append",
                    help="cross-validate only these variants (default: all)")
    ap.add_argument("--quantize-only", action="store_true",
                    help="only remake <out>/bears-int8.onnx from <out>/bears.onnx")
    a = ap.parse_args(argv)
    if a.quantize_only:
        train = [it.path for it in data.load(a.data) if it.split == "train"]
        quantize_int8(a.out / f"{NAME}.onnx", random.Random(0).sample(train, 320))
        return 0
    try:
        variants = {k: VARIANTS[k] for k in (a.variant or VARIANTS)}
        build(a.data, a.out, variants)
    except data.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
