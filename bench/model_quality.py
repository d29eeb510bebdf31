"""Judge the default model on the held-out test split, per kind of picture, with two baselines.

    python bench/model_quality.py [--data ../shared/data] [--models models]
        [--shipped build/shipped/bears-int8.onnx] [--out bench/results/model_quality.json]
        [--mistakes models/bears_mistakes.jpg] [--update-metadata]

The test split is whole sources the model never trained on, plus 30% of the ImageNet sample
photos (`teddywatch/training/data.py` says which and why). Scored, each on the same pictures:

* `int8`: models/bears-int8.onnx through teddywatch's own decoder and onnx engine (what is served);
* `fp32`: models/bears.onnx the same way, and the label agreement of int8 with it;
* `fastai`: models/bears.pkl through the fastai engine (with --fastai; slower);
* baseline `raw ImageNet head`: the untrained EfficientNet-Lite0 head, a bear when the ImageNet
  probability of the bear classes is at least tau, tau chosen on the train and valid pictures
  (the largest that keeps 99% of their bears);
* baseline `shipped before`: the model shipped before this one (--shipped; `make model` takes it
  from git), through the same decoder and engine.

Prints a markdown table and writes JSON (with every mistake), a picture of the worst mistakes,
and, with --update-metadata, the scores into models/bears*.json. Needs the `[fastai]` extra for
the raw-head baseline; exits 0 with a note when the shared data are absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from teddywatch.training import data, judge  # noqa: E402

HEADLINE = ("bears_right_and_sure", "bears_lost", "nonbears_rejected", "cats_rejected",
            "dogs_rejected")


def raw_head(items: list[data.Item], learn_items: list[data.Item]) -> tuple[np.ndarray, float]:
    """The untrained ImageNet head as a bear/other rule, tau chosen on `learn_items`."""
    import torch

    from teddywatch.training import features
    from teddywatch.training.bearnet import GROUPS, build_backbone

    backbone = build_backbone(pretrained=True).eval()
    body, cls = features.pooled_body(backbone), backbone.get_classifier()
    bear_cols = [i for idx in GROUPS.values() for i in idx]

    def mass_and_bears(its: list[data.Item]) -> tuple[np.ndarray, np.ndarray]:
        x = features.compute(body, [it.path for it in its], tag="judge", progress=False)
        with torch.no_grad():
            z = cls(torch.from_numpy(x)).double()
        mass = torch.softmax(z, 1)[:, bear_cols].sum(1).numpy()
        b3 = torch.stack([torch.logsumexp(z[:, list(GROUPS[b])], 1) for b in data.BEARS], 1)
        return mass, b3.numpy()

    lm, _ = mass_and_bears(learn_items)
    tau = judge.choose_bear_mass_tau(lm, np.array([it.is_bear for it in learn_items]))
    mass, b3 = mass_and_bears(items)
    return judge.bear_mass_rule(mass, b3, tau), tau


def mistakes_picture(rows: list[judge.Row], out: Path, n: int = 12) -> None:
    """A grid of the most confident mistakes, captioned truth -> answer (confidence)."""
    from PIL import Image, ImageDraw

    worst = judge.worst(rows, n)
    if not worst:
        return
    cell, cols = 200, 4
    grid = Image.new("RGB", (cols * cell, ((len(worst) + cols - 1) // cols) * (cell + 28)), "white")
    draw = ImageDraw.Draw(grid)
    for i, r in enumerate(worst):
        im = Image.open(r.item.path).convert("RGB")
        im.thumbnail((cell - 8, cell - 8))
        x, y = (i % cols) * cell, (i // cols) * (cell + 28)
        grid.paste(im, (x + (cell - im.width) // 2, y + 4))
        answer = "unsure" if r.unsure else r.label
        draw.text((x + 6, y + cell + 2), f"{r.item.kind} -> {answer} {r.confidence:.0%}",
                  fill="black")
        draw.text((x + 6, y + cell + 14), r.item.path.name, fill="gray")
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, quality=85)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--shipped", type=Path, default=None,
                    help="the previously shipped model (.onnx), as a baseline")
    ap.add_argument("--fastai", action="store_true", help="also score bears.pkl (fastai engine)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model_quality.json")
    ap.add_argument("--mistakes", type=Path, default=None,
                    help="write a picture of the int8 model's worst mistakes here")
    ap.add_argument("--update-metadata", action="store_true",
                    help="write the test scores into the models' metadata JSON")
    a = ap.parse_args(argv)
    if not (a.data / "MANIFEST.tsv").is_file():
        print(f"skipped: {a.data}/MANIFEST.tsv not found (the shared data are needed)")
        return 0
    items = data.load(a.data)
    test = [it for it in items if it.split == "test"]
    learn = [it for it in items if it.split != "test"]
    print(f"test split: {len(test)} pictures {data.summary(test)['test']}", flush=True)

    models: dict[str, dict] = {}
    rows: dict[str, list[judge.Row]] = {}
    probs: dict[str, np.ndarray] = {}
    plan = [("int8", a.models / "bears-int8.onnx", "onnx"), ("fp32", a.models / "bears.onnx", "onnx")]
    if a.fastai:
        plan.append(("fastai", a.models / "bears.pkl", "fastai"))
    if a.shipped:
        plan.append(("shipped before", a.shipped, "onnx"))
    for name, path, engine in plan:
        t = time.perf_counter()
        p, threshold, model_id = judge.served_probs(path, test, engine)
        probs[name] = p
        rows[name] = judge.rows_from_probs(test, p, threshold)
        models[name] = {"model": model_id, "threshold": threshold, **judge.score(rows[name])}
        print(f"{name}: {model_id} in {time.perf_counter() - t:.0f} s", flush=True)
    try:
        p, tau = raw_head(test, learn)
        rows["raw ImageNet head"] = judge.rows_from_probs(test, p, 0.0)
        models["raw ImageNet head"] = {"model": f"untrained, bear mass >= {tau:.4f}",
                                       "tau": tau, **judge.score(rows["raw ImageNet head"])}
    except ImportError as e:
        print(f"raw ImageNet head baseline skipped: {e} (needs the [fastai] extra)")

    agree = float((probs["int8"].argmax(1) == probs["fp32"].argmax(1)).mean())
    models["int8"]["label_agreement_with_fp32"] = round(agree, 4)
    for name in models:
        models[name]["targets_met"] = judge.targets_met(models[name])
    result = {"data": str(a.data), "split": data.__doc__.split("\n\n")[1].strip(),
              "test_counts": data.summary(test)["test"], "models": models}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    md = judge.table({k: v for k, v in models.items()})
    a.out.with_suffix(".md").write_text(md)
    print(md)
    print(f"int8 labels agree with fp32 on {agree:.2%} of {len(test)} test pictures")
    for name, m in models.items():
        print(f"{name:18s} targets met: {m['targets_met']}")
    if a.mistakes:
        mistakes_picture(rows["int8"], a.mistakes)
        print(f"wrote {a.mistakes}")
    if a.update_metadata:
        keep = HEADLINE + ("ece", "threshold", "by_kind")
        for name, file in (("int8", "bears-int8.json"), ("fp32", "bears.json")):
            path = a.models / file
            meta = json.loads(path.read_text())
            meta.setdefault("scores", {})["test"] = {
                "split": "held-out sources (teddywatch/training/data.py)",
                **{k: models[name][k] for k in keep if k in models[name]},
                **({"label_agreement_with_fp32": agree} if name == "int8" else {}),
                "baselines": {b: {k: models[b][k] for k in HEADLINE + ("ece",)}
                              for b in ("raw ImageNet head", "shipped before") if b in models}}
            path.write_text(json.dumps(meta, indent=1) + "\n")
        print("updated scores in models/bears.json and models/bears-int8.json")
    print(f"wrote {a.out} and {a.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
