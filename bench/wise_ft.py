"""Weight-space ensembling (WiSE-FT) of the shipped bears model with its ImageNet starting point.

    .venv/bin/python bench/wise_ft.py [--data ../shared/data] [--negatives build/negatives]
        [--model models/bears.pkl] [--write ALPHA OUT.pkl]

For alpha on a grid, the weights alpha * fine-tuned + (1 - alpha) * ImageNet (the grouped head
before training: per-label biases 0) are scored on the training run's **validation** split only
(the same seed-42 split `teddywatch train` made, rebuilt here; the negatives are
`bench/data/make_negatives.py`'s training pool). For each alpha the unsure threshold is chosen by
the card's rule (`choose_threshold`), then bears named right and sure, bears other/unsure and
non-bears other/unsure are printed. `--write` saves one interpolated learner (with its threshold in
a .json beside it) for `bench/model_quality.py`. Results: models/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRID = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def interpolate(fine: dict, start: dict, alpha: float) -> dict:
    return {k: alpha * fine[k] + (1 - alpha) * start[k] if fine[k].is_floating_point() else fine[k]
            for k in fine}


def validation_tensors(data: Path, negatives: Path):  # noqa: ANN201
    """The validation split of `teddywatch.training.train` (seed 42, 20%), as eval tensors."""
    import torch
    from fastai.vision.all import (CategoryBlock, ImageDataLoaders, Normalize, RandomResizedCrop,
                                   aug_transforms, imagenet_stats, set_seed)

    from teddywatch.training import BEAR_LABELS, bear_split, labelled_items, list_images

    items = [(p, lab) for p, lab in labelled_items(data) if bear_split(p) != "holdout"]
    items += [(p, "other") for p in list_images(negatives)]
    set_seed(42, reproducible=True)
    dls = ImageDataLoaders.from_lists(
        data, [p for p, _ in items], [lab for _, lab in items], valid_pct=0.2, seed=42,
        y_block=CategoryBlock(vocab=list(BEAR_LABELS), sort=False),
        item_tfms=RandomResizedCrop(224, min_scale=0.5),
        batch_tfms=[*aug_transforms(size=None, max_rotate=10.0, max_warp=0.1),
                    Normalize.from_stats(*imagenet_stats)],
        bs=32, num_workers=0, device=torch.device("cpu"))
    xs, ys = zip(*dls.valid)
    return (torch.cat(xs).as_subclass(torch.Tensor), torch.cat(ys).as_subclass(torch.Tensor))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--negatives", type=Path, default=ROOT / "build" / "negatives")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bears.pkl")
    ap.add_argument("--write", nargs=2, metavar=("ALPHA", "OUT_PKL"))
    a = ap.parse_args(argv)
    if not (a.data / "bears").is_dir() or not (a.negatives / "train").is_dir():
        print(f"skipped: needs {a.data / 'bears'} and {a.negatives / 'train'} "
              "(bench/data/make_negatives.py build/negatives)")
        return 0
    import torch
    from fastai.vision.all import load_learner

    from teddywatch.bearnet import bearnet
    from teddywatch.training import choose_threshold

    learn = load_learner(a.model, cpu=True)
    model = learn.model.eval()
    fine = {k: v.clone() for k, v in model.state_dict().items()}
    start = bearnet(pretrained=True).state_dict()
    if a.write:
        alpha, out = float(a.write[0]), Path(a.write[1])
        if alpha not in GRID:
            ap.error(f"ALPHA must be one of {GRID}")
    x, y = validation_tensors(a.data / "bears", a.negatives / "train")
    other = 3
    rows = []
    for alpha_i in GRID:
        model.load_state_dict(interpolate(fine, start, alpha_i))
        with torch.no_grad():
            probs = torch.cat([torch.softmax(model(x[i:i + 32]), 1) for i in range(0, len(x), 32)])
        t, _ = choose_threshold(probs, y, other)
        conf, pred = probs.max(1)
        bear = y != other
        unsure_or_other = (pred == other) | (conf < t)
        rows.append({"alpha": alpha_i, "threshold": t, "bears": int(bear.sum()),
                     "bears_right_and_sure": int(((pred == y) & (conf >= t) & bear).sum()),
                     "bears_other_or_unsure": int((unsure_or_other & bear).sum()),
                     "non_bears": int((~bear).sum()),
                     "non_bears_other_or_unsure": int((unsure_or_other & ~bear).sum())})
        print(json.dumps(rows[-1]), flush=True)
    if a.write:
        threshold = next(r["threshold"] for r in rows if r["alpha"] == alpha)
        model.load_state_dict(interpolate(fine, start, alpha))
        learn.teddywatch["unsure_threshold"] = threshold
        learn.export(out.absolute())
        out.with_suffix(".json").write_text(json.dumps({"unsure_threshold": threshold}) + "\n")
        print(f"wrote {out} (alpha {alpha}, threshold {threshold})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
