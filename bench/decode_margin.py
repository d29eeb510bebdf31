"""How far teddywatch's decoder may shrink photos before the onnx engine leaves `learn.predict`.

    PYTHONPATH=. .venv/bin/python bench/decode_margin.py [--data ../shared/data] [--web 150]

JPEG draft mode, libwebp's scaled decoding and `shrink` reduce a photo by 2, 4 or 8 before the
model's resize; `learn.predict` resizes the full image. For each learner and photo this decodes the
photo at every reduction (1, 2, 4, 8), runs teddywatch's onnx engine on each, and compares with
`learn.predict(file)`. A margin k means "shrink only while the decoded image keeps k x the model's
input size" (`imaging.decode_size`; whole: never); for each k the table shows the largest
probability difference over all photos (and labels changed), per learner. The last two columns:
the margin `teddywatch export` picks for the learner (`training/margin.py`, from its check photos
and probes only) and what the real photos see at that margin.

Learners: the default model's learner (models/bears.pkl: EfficientNet-Lite0, 224 px squish), and
for each item resize (crop 64, squish 96, pad 128, crop 128x192, crop 224, fastbook's presizing
460 -> 224) a resnet18 trained from scratch for 2 epochs and an EfficientNet-Lite0 from ImageNet
weights (the default model's backbone: no download) fine-tuned for 1 epoch, on 240 training photos.
Photos: a seeded sample of web photos from the test split (JPEG, no EXIF rotation) and the
camera photos in photos/ (9-37 MP, two WebP). Writes bench/results/decode_margin.json; per-photo
numbers are cached in --work.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from PIL import Image  # noqa: E402

from teddywatch.imaging import decode  # noqa: E402

FACTORS = (1, 2, 4, 8)


def learner_configs():  # noqa: ANN201
    from fastai.vision.all import Normalize, Resize, aug_transforms, imagenet_stats

    norm = [Normalize.from_stats(*imagenet_stats)]
    return {
        "crop64": (Resize(64), norm),
        "squish96": (Resize(96, method="squish"), norm),
        "pad128": (Resize(128, method="pad", pad_mode="zeros"), norm),
        "crop128x192": (Resize((128, 192)), norm),
        "crop224": (Resize(224), norm),
        "presize460to224": (Resize(460), [*aug_transforms(size=224, min_scale=0.75), *norm]),
    }


def pretrained_backbone():  # noqa: ANN201
    """ImageNet-pretrained EfficientNet-Lite0 weights, offline: the default model's backbone."""
    from teddywatch.training.export import load_learner_cpu

    return load_learner_cpu(ROOT / "models" / "bears.pkl").model.backbone.state_dict()


def train_learners(work: Path, train_items: list) -> dict[str, Path]:
    """resnet18 from scratch (fit 2 epochs) and EfficientNet-Lite0 from ImageNet weights
    (fine_tune 1 epoch, as fastbook does) for every item resize in `learner_configs`."""
    import torch
    from fastai.vision.all import ImageDataLoaders, resnet18, vision_learner

    out, weights = {}, None
    for kind in ("scratch-resnet18", "pretrained-effnet"):
        for name, (item, batch) in learner_configs().items():
            pkl = work / f"{kind}-{name}.pkl"
            out[f"{kind} {name}"] = pkl
            if pkl.exists():
                continue
            torch.manual_seed(0)
            started = time.perf_counter()
            dls = ImageDataLoaders.from_lists(
                Path("/"), [str(i.path) for i in train_items], [i.label for i in train_items],
                valid_pct=0.2, seed=0, item_tfms=item, batch_tfms=batch, bs=16, num_workers=0)
            if kind == "scratch-resnet18":
                learn = vision_learner(dls, resnet18, pretrained=False)
                with learn.no_bar(), learn.no_logging():
                    learn.fit_one_cycle(2, 3e-3)
            else:
                learn = vision_learner(dls, "efficientnet_lite0", pretrained=False)
                weights = weights if weights is not None else pretrained_backbone()
                missing = learn.model[0].model.load_state_dict(weights, strict=False)
                assert not missing.missing_keys, missing
                with learn.no_bar(), learn.no_logging():
                    learn.fine_tune(1, 3e-3)
            learn.export(pkl)
            print(f"trained {kind} {name} in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
    return out


def served(pkl: Path, work: Path):  # noqa: ANN201
    """(learner, onnx engine, model side) for a learner, exported without the export check."""
    from teddywatch.engines.onnx import OnnxEngine
    from teddywatch.training.export import load_learner_cpu, write_model
    from teddywatch.training.valid_tfms import served_pipeline, verify

    learn = load_learner_cpu(pkl)
    pipeline = served_pipeline(learn, pkl)
    verify(learn, pipeline, pkl)
    onnx_path = work / f"{pkl.stem}.onnx"
    write_model(learn, pkl, pipeline, onnx_path)
    return learn, OnnxEngine(onnx_path), max(pipeline.input_size)


def reductions(path: Path) -> dict[int, Image.Image]:
    """The photo as teddywatch decodes it at each reduction factor (1 = whole)."""
    with Image.open(path) as image:
        short = min(image.size)
    out = {}
    for factor in FACTORS:
        img = decode(path, short // factor)
        if round(short / min(img.size)) == factor:
            out[factor] = img
    return out


def chosen_factor(size: tuple[int, int], min_size: int) -> int:
    """The reduction decode picks for `min_size` (JPEG draft, libwebp and shrink agree)."""
    fit = min(size[0] // min_size, size[1] // min_size)
    return next((f for f in (8, 4, 2) if f <= fit), 1)


def measure(models: dict, photos: list[Path], camera: list[Path], cache: Path) -> dict:
    """rows[learner] = [{photo, size, camera, per: {factor: [ratio, diff, same label]}}]."""
    rows = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [name for name in models if name not in rows]
    for name in todo:
        rows[name] = []
    for n, path in enumerate(photos if todo else []):
        decoded = reductions(path)
        with Image.open(path) as image:
            size = list(image.size)
        for name in todo:
            learn, engine, side = models[name]
            with learn.no_bar():
                _, _, probs = learn.predict(path)
            ref = np.array([float(p) for p in probs])
            per = {}
            for factor, img in decoded.items():
                (pred,) = engine.predict([img])
                ours = np.array([dict(pred.top)[str(v)] for v in learn.dls.vocab])
                per[str(factor)] = [min(img.size) / side, float(np.abs(ours - ref).max()),
                                    bool(ours.argmax() == ref.argmax())]
            rows[name].append({"photo": str(path), "size": size, "camera": path in camera,
                               "per": per})
        if n % 25 == 0:
            print(f"{n + 1}/{len(photos)} photos", file=sys.stderr)
    cache.write_text(json.dumps(rows))
    return rows


def at_margin(rows: list[dict], side: int, margin: float | None) -> dict:
    """What the photos see when decoded with `imaging.decode_size(side, margin)`."""
    from teddywatch.imaging import decode_size

    worst, flips, reduced = 0.0, 0, 0
    for row in rows:
        f = chosen_factor(tuple(row["size"]), decode_size(side, margin))
        while str(f) not in row["per"]:  # a reduction the decoder could not give: the next one
            f //= 2
        _, diff, same = row["per"][str(f)]
        worst, flips, reduced = max(worst, diff), flips + (not same), reduced + (f > 1)
    return {"max_diff": round(worst, 5), "label_changes": flips, "photos_reduced": reduced}


def export_gaps(engine, work: Path) -> dict[str, float]:  # noqa: ANN001
    """What `teddywatch export` measures at every margin (`margin.choose_margin` on its check
    photos and that margin's probes): {margin: largest logit-gap change G}."""
    from teddywatch.training import margin
    from teddywatch.training.export_check import camera_sized, default_images

    saved = margin.GAP_LIMIT
    margin.GAP_LIMIT = -1.0  # try them all
    try:
        return margin.choose_margin(engine, [*default_images(), camera_sized(work)], work).gaps
    finally:
        margin.GAP_LIMIT = saved


def pick(gaps: dict[str, float], limit: float) -> float | None:
    """The margin the export picks given what it measured at each (None: whole images)."""
    return next((float(name) for name, gap in gaps.items() if gap <= limit), None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--web", type=int, default=150)
    ap.add_argument("--work", type=Path, default=Path("/tmp/teddywatch-decode-margin"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decode_margin.json")
    a = ap.parse_args()
    from teddywatch.training import data
    from teddywatch.training.margin import GAP_LIMIT, MARGINS

    a.work.mkdir(parents=True, exist_ok=True)
    items = data.load(a.data)
    rng = random.Random(13)
    train = [i for label in data.LABELS for i in
             rng.sample([i for i in items if i.split == "train" and i.label == label], 60)]
    test = [i for i in items if i.split == "test" and i.path.suffix.lower() in (".jpg", ".jpeg")]
    web = [i.path for i in rng.sample(test, a.web)]
    web = [p for p in web if Image.open(p).getexif().get(0x0112, 1) == 1]
    camera = sorted(p for p in (a.data / "photos").iterdir() if p.is_file())
    pkls = {"default(bears.pkl)": ROOT / "models" / "bears.pkl", **train_learners(a.work, train)}
    models = {name: served(pkl, a.work) for name, pkl in pkls.items()}
    rows = measure(models, web + camera, camera, a.work / "rows.json")
    fixed = (1.0, *MARGINS, None)
    report = {"command": "PYTHONPATH=. .venv/bin/python bench/decode_margin.py " +
                         " ".join(sys.argv[1:]),
              "photos": {"web": len(web), "camera": len(camera)},
              "gap_limit": GAP_LIMIT, "learners": {}}
    names = ["whole" if m is None else f"k={m:g}" for m in fixed]
    lines = ["| learner (model side) | " + " | ".join(names) + " | export picks | at its pick |",
             "|---|" + "---:|" * (len(fixed) + 2)]
    for name, (learn, engine, side) in models.items():
        per_margin = {n: at_margin(rows[name], side, m) for n, m in zip(names, fixed)}
        gaps = export_gaps(engine, a.work)
        margin = pick(gaps, GAP_LIMIT)
        picked = at_margin(rows[name], side, margin)
        report["learners"][name] = {
            "model_side": side, "margins": per_margin, "export_gap_changes": gaps,
            "export_picks": margin, "at_pick": picked,
            "other_limits": {str(g): at_margin(rows[name], side, pick(gaps, g)) | {
                "margin": pick(gaps, g)} for g in (GAP_LIMIT * 2, GAP_LIMIT * 4)}}

        def cell(r: dict) -> str:
            return f"{r['max_diff']:.4f}" + (f" ({r['label_changes']} labels)"
                                             if r["label_changes"] else "")

        lines.append(f"| {name} ({side}) | " + " | ".join(cell(per_margin[n]) for n in names) +
                     f" | {'whole' if margin is None else margin} | {cell(picked)} |")
    report["table_markdown"] = "\n".join(lines)
    a.out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
