"""Model quality on images the model never saw: held-out bears and held-out non-bear pictures.

    python bench/model_quality.py [--data ../shared/data] [--model models/bears.pkl]
        [--negatives DIR] [--plain PLAIN.pkl] [--out bench/results/model_quality.json]
        [--update-metadata models/bears.json]

* Bears: the held-out split of DATA/bears (`teddywatch.training.bear_split`, 25% by file-name
  hash), which `teddywatch train` never trains on.
* Non-bears: the `report` pool of `bench/data/make_negatives.py` (built into a temporary folder
  when --negatives is not given), whose sources are disjoint from the training pool.
* Models: the given learner (fastai engine, with the unsure threshold from its metadata, chosen on
  the training run's validation split), its ONNX export when present (teddywatch's onnx engine if
  installed), the raw ImageNet head grouped into the same 4 labels with no training (baselines at
  the same threshold, at 0.5, and as "bear if P(bear) >= 0.5"), and optionally a plain 3-class
  fine-tune (`--plain`, from `train(..., grouped_head=False)` on the bears only).

Writes JSON (and prints a summary). Exits 0 with a note when the shared data are absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "data"))

BEARS = ("black", "grizzly", "teddy")


def score(rows: list[dict], threshold: float) -> dict:
    """rows: {truth, label, conf, source}. Bears: truth in BEARS; negatives: truth == other."""
    bears = [r for r in rows if r["truth"] in BEARS]
    negs = [r for r in rows if r["truth"] == "other"]
    unsure = lambda r: r["conf"] < threshold  # noqa: E731
    out: dict = {"threshold": threshold}
    if bears:
        n = len(bears)
        out["bears"] = {
            "n": n,
            "top1_right": round(sum(r["label"] == r["truth"] for r in bears) / n, 4),
            "named_right_and_sure": round(sum(r["label"] == r["truth"] and not unsure(r)
                                              for r in bears) / n, 4),
            "other_or_unsure": round(sum(r["label"] == "other" or unsure(r) for r in bears) / n, 4),
            "wrong_bear_sure": round(sum(r["label"] in BEARS and r["label"] != r["truth"]
                                         and not unsure(r) for r in bears) / n, 4),
        }
        out["bears"]["among_bear_answers_right"] = round(
            sum(r["label"] == r["truth"] for r in bears)
            / max(1, sum(r["label"] in BEARS for r in bears)), 4)
    if negs:
        n = len(negs)
        ok = [r["label"] == "other" or unsure(r) for r in negs]
        out["negatives"] = {"n": n, "other_or_unsure": round(sum(ok) / n, 4),
                            "other": round(sum(r["label"] == "other" for r in negs) / n, 4)}
        by = defaultdict(list)
        for r, good in zip(negs, ok):
            by[r["source"]].append(good)
        out["negatives"]["by_source"] = {s: f"{sum(v)}/{len(v)}" for s, v in sorted(by.items())}
    out["failures"] = [
        {k: r[k] for k in ("file", "truth", "label", "conf")}
        for r in rows
        if (r["truth"] in BEARS and (r["label"] != r["truth"] or unsure(r)))
        or (r["truth"] == "other" and r["label"] != "other" and not unsure(r))
    ]
    return out


def run_engine(engine, items: list[tuple[Path, str, str]], bs: int = 16) -> list[dict]:  # noqa: ANN001
    from PIL import Image

    rows = []
    for i in range(0, len(items), bs):
        chunk = items[i:i + bs]
        ims = [Image.open(p).convert("RGB") for p, _, _ in chunk]
        for (p, truth, src), pr in zip(chunk, engine.predict(ims)):
            rows.append({"file": str(p), "truth": truth, "source": src, "label": pr.label,
                         "conf": round(pr.confidence, 4),
                         "probs": {k: round(v, 4) for k, v in pr.top}})
    return rows


class RawImagenetHead:
    """EfficientNet-Lite0 ImageNet head grouped into black/grizzly/teddy/other, no training.

    Preprocessing as the trained model: squish to 256x256, centre-crop 224, ImageNet normalise.
    """

    def __init__(self) -> None:
        import torch
        import torchvision.transforms as T

        from teddywatch.bearnet import LABELS, bearnet

        self.torch = torch
        self.net = bearnet(pretrained=True).eval()
        self.labels = LABELS
        self.tf = T.Compose([T.Resize((256, 256)), T.CenterCrop(224), T.ToTensor(),
                             T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def predict(self, images):  # noqa: ANN001, ANN201
        from teddywatch.results import Prediction

        with self.torch.no_grad():
            p = self.net(self.torch.stack([self.tf(im) for im in images])).softmax(1)
        out = []
        for row in p.tolist():
            top = tuple(sorted(zip(self.labels, row), key=lambda t: -t[1]))
            out.append(Prediction(top[0][0], top[0][1], top))
        return out


def bear_prob_rule(rows: list[dict], t: float) -> list[dict]:
    """Baseline: 'a bear' if P(black)+P(grizzly)+P(teddy) >= t (then the best bear), else other."""
    out = []
    for r in rows:
        pb = sum(r["probs"][b] for b in BEARS)
        best = max(BEARS, key=lambda b: r["probs"][b])
        out.append({**r, "label": best if pb >= t else "other", "conf": 1.0})
    return out


def three_way(rows: list[dict]) -> dict:
    """Accuracy of the argmax over the 3 bear probabilities only (the '~98%' fact)."""
    bears = [r for r in rows if r["truth"] in BEARS]
    right = sum(max(BEARS, key=lambda b: r["probs"][b]) == r["truth"] for r in bears)
    return {"n": len(bears), "argmax_over_bears_right": round(right / max(1, len(bears)), 4)}



def load_negatives(neg_dir: Path | None) -> tuple[Path, dict, tempfile.TemporaryDirectory | None]:
    """The non-bear pictures and their manifest; built into a temp folder when none is given.

    The caller cleans up the temp folder (the third item) when it is done with the pictures.
    """
    tmp = None
    if neg_dir is None:
        import make_negatives

        tmp = tempfile.TemporaryDirectory()
        neg_dir = Path(tmp.name)
        make_negatives.build(neg_dir)
    return neg_dir, json.loads((neg_dir / "manifest.json").read_text()), tmp

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bears.pkl")
    ap.add_argument("--negatives", type=Path, default=None,
                    help="output folder of make_negatives.py (uses its report/ pool)")
    ap.add_argument("--plain", type=Path, default=None, help="plain 3-class fine-tune .pkl")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model_quality.json")
    ap.add_argument("--update-metadata", type=Path, default=None,
                    help="write the summary into this model metadata JSON's `scores`")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)

    bears_dir = a.data / "bears"
    if not bears_dir.is_dir():
        print(f"skipped: {bears_dir} not found (the shared bear data are needed)")
        return 0
    try:
        import torch
    except ImportError:
        print("skipped: torch/fastai not installed (pip install 'teddywatch[fastai]')")
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    from teddywatch.engines import load_engine
    from teddywatch.training import bear_split, labelled_items

    items = [(p, lab, "bears:" + lab) for p, lab in labelled_items(bears_dir)
             if bear_split(p) == "holdout"]
    neg_dir, manifest, tmp = load_negatives(a.negatives)
    items += [(neg_dir / m["file"], "other", m["source"]) for m in manifest["files"]
              if m["pool"] == "report"]
    print(f"report set: {Counter(t for _, t, _ in items)}")

    result: dict = {"data": str(a.data), "report_set": dict(Counter(t for _, t, _ in items)),
                    "bear_split": "held-out 25% of shared bears by file-name hash "
                                  "(teddywatch.training.bear_split)",
                    "negatives": "report pool of bench/data/make_negatives.py "
                                 f"(skipped sources: {manifest['skipped_sources']})",
                    "models": {}}
    meta_path = a.model.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    thr = float(meta.get("unsure_threshold", 0.5))

    eng = load_engine(a.model, "fastai", threads=a.threads)
    t = time.perf_counter()
    rows = run_engine(eng, items)
    dt = time.perf_counter() - t
    result["models"]["trained"] = {"model": eng.model_id, **score(rows, thr),
                                   "seconds_per_image_batch16": round(dt / len(items), 4)}
    onnx_path = a.model.with_suffix(".onnx")
    if onnx_path.is_file():
        try:
            oeng = load_engine(onnx_path, "onnx", threads=a.threads)
            orows = run_engine(oeng, items)
            agree = sum(x["label"] == y["label"] for x, y in zip(rows, orows)) / len(rows)
            result["models"]["trained_onnx"] = {"model": oeng.model_id, **score(orows, thr),
                                                "label_agreement_with_fastai": round(agree, 4)}
        except Exception as e:  # noqa: BLE001 - the onnx engine may not exist yet
            result["models"]["trained_onnx"] = {"skipped": f"{type(e).__name__}: {e}"}

    raw = run_engine(RawImagenetHead(), items)
    result["models"]["raw_imagenet_head"] = {
        "same_threshold": score(raw, thr), "threshold_0.5": score(raw, 0.5),
        "bears_only_argmax": three_way(raw),
        "bear_probability_rule_0.5": score(bear_prob_rule(raw, 0.5), 0.0),
    }
    if a.plain:
        peng = load_engine(a.plain, "fastai", threads=a.threads)
        prows = run_engine(peng, items)
        result["models"]["plain_3class_finetune"] = {"model": peng.model_id,
                                                     **score(prows, peng.default_threshold)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")

    def line(name: str, s: dict) -> str:
        b, n = s.get("bears", {}), s.get("negatives", {})
        return (f"{name:34s} bears right&sure {b.get('named_right_and_sure')}  bears top1 "
                f"{b.get('top1_right')}  bears other/unsure {b.get('other_or_unsure')}  "
                f"non-bears other/unsure {n.get('other_or_unsure')}  (t={s['threshold']})")

    m = result["models"]
    print(line("trained (fastai)", m["trained"]))
    if "threshold" in m.get("trained_onnx", {}):
        print(line("trained (onnx)", m["trained_onnx"]))
    print(line("raw ImageNet head, same t", m["raw_imagenet_head"]["same_threshold"]))
    print(line("raw ImageNet head, P(bear)>=0.5", m["raw_imagenet_head"]["bear_probability_rule_0.5"]))
    print("raw ImageNet head, argmax over 3 bears:", m["raw_imagenet_head"]["bears_only_argmax"])
    if "plain_3class_finetune" in m:
        print(line("plain 3-class fine-tune", m["plain_3class_finetune"]))
    print(f"wrote {a.out}")

    if a.update_metadata:
        md = json.loads(a.update_metadata.read_text())
        keep = ("bears", "negatives", "threshold")
        md.setdefault("scores", {})["report"] = {
            "set": result["report_set"], "bear_split": result["bear_split"],
            "negatives": result["negatives"],
            "trained": {k: m["trained"][k] for k in keep if k in m["trained"]},
            "raw_imagenet_head": {k: {kk: v[kk] for kk in keep if kk in v}
                                  for k, v in m["raw_imagenet_head"].items()
                                  if isinstance(v, dict) and "threshold" in v},
            "raw_imagenet_head_bears_only_argmax": m["raw_imagenet_head"]["bears_only_argmax"],
        }
        if "plain_3class_finetune" in m:
            md["scores"]["report"]["plain_3class_finetune"] = {
                k: m["plain_3class_finetune"][k] for k in keep if k in m["plain_3class_finetune"]}
        a.update_metadata.write_text(json.dumps(md, indent=1) + "\n")
        print(f"updated scores in {a.update_metadata}")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
