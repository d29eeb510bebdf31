"""Frozen ImageNet features for the default model: computed once per picture (and view), kept.

The default model trains only its head on top of the frozen EfficientNet-Lite0 body (see
`default_model`), so every picture goes through the body once per view and the head then trains
in seconds. The pictures are loaded by fast.ai's own pipelines: `dls.test_dl` for the
validation-time view the served model sees, and the training DataLoader (random resized crops,
flips, lighting and warps from `aug_transforms`) for augmented views. Results are cached in an
.npz keyed by the file list, the view and the transform, so a re-run costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

#: Where the cache goes unless told otherwise (build/ is not committed).
CACHE = Path("build") / "features"


def _key(paths: Sequence[Path], view: str, size: int, extra: str = "") -> str:
    h = hashlib.sha256(json.dumps([view, size, extra, [str(p) for p in paths]]).encode())
    return h.hexdigest()[:16]


def pooled_body(backbone):  # noqa: ANN001, ANN201
    """The backbone up to its pooled 1280-d feature vector (timm: `forward_head(pre_logits=True)`)."""
    import torch

    class Body(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = backbone

        def forward(self, x):  # noqa: ANN001, ANN202
            return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    return Body().eval()


def image_dls(paths: Sequence[Path], labels: Sequence[str], size: int, bs: int = 32,
              augment: bool = False, seed: int = 0):  # noqa: ANN201
    """fast.ai DataLoaders over `paths`: Resize(size, squish) at validation (what is served);
    with `augment`, the training loader crops at random (RandomResizedCrop, min_scale 0.35) and
    applies `aug_transforms`. ImageNet normalisation in both."""
    import torch
    from fastai.vision.all import (CategoryBlock, DataBlock, ImageBlock, IndexSplitter, Normalize,
                                   RandomResizedCrop, Resize, ResizeMethod, aug_transforms,
                                   imagenet_stats)

    from teddywatch.training.data import LABELS

    item = (RandomResizedCrop(size, min_scale=0.35, ratio=(0.75, 1.333)) if augment
            else Resize(size, method=ResizeMethod.Squish))
    batch = [*aug_transforms(size=None, max_rotate=10.0, max_warp=0.1, max_lighting=0.3)] \
        if augment else []
    batch.append(Normalize.from_stats(*imagenet_stats))
    label_of = dict(zip(map(str, paths), labels))
    block = DataBlock(blocks=(ImageBlock, CategoryBlock(vocab=list(LABELS), sort=False)),
                      get_y=lambda p: label_of[str(p)], splitter=IndexSplitter([]),
                      item_tfms=item, batch_tfms=batch)
    return block.dataloaders([Path(p) for p in paths], bs=bs, num_workers=0,
                             device=torch.device("cpu"))


def _views(paths: Sequence[Path], size: int, views: int, seed: int, file: Path | None,
           run, what: str, progress: bool) -> dict[str, np.ndarray]:  # noqa: ANN001
    """`run(batch) -> {name: array}` over the served view of `paths` (`views=0`) or over
    `views` seeded augmented passes, in the order of `paths`; cached in `file` (an .npz)."""
    import torch
    from fastai.torch_core import set_seed

    if file is not None and file.is_file():
        return dict(np.load(file))
    t0 = time.time()
    passes: list[dict[str, list]] = []

    def one_pass(batches) -> None:  # noqa: ANN001
        out: dict[str, list] = {}
        for xb in batches:
            for name, value in run(xb).items():
                out.setdefault(name, []).append(value)
        passes.append(out)

    labels = ["other"] * len(paths)
    with torch.no_grad():
        if views == 0:
            dls = image_dls(paths, labels, size)
            one_pass(b[0] for b in dls.test_dl(list(paths), num_workers=0, bs=32))
        else:
            dls = image_dls(paths, labels, size, augment=True, seed=seed)
            dl = dls.train.new(shuffle=False, drop_last=False)  # keep the order of `paths`
            for v in range(views):
                set_seed(seed + v, reproducible=True)
                one_pass(xb for xb, _ in dl)
                if progress:
                    print(f"  augmented view {v + 1}/{views} ({what}): {len(paths)} pictures, "
                          f"{time.time() - t0:.0f} s", flush=True)
    result = {name: np.concatenate(parts) for name, parts in passes[0].items()} if views == 0 \
        else {name: np.stack([np.concatenate(p[name]) for p in passes]) for name in passes[0]}
    if progress:
        kind = "served" if views == 0 else f"{views} augmented views"
        print(f"{what} ({kind}) for {len(paths)} pictures in {time.time() - t0:.0f} s",
              flush=True)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, **result)
    return result


def compute(body, paths: Sequence[Path], size: int = 224, views: int = 0, seed: int = 0,  # noqa: ANN001
            cache: Path | None = CACHE, tag: str = "", progress: bool = True) -> np.ndarray:
    """Pooled features, shape (len(paths), D) for the served view (`views=0`), or
    (views, len(paths), D) for `views` augmented passes (seeded)."""
    view = "served" if views == 0 else f"aug{views}s{seed}"
    file = None if cache is None else \
        Path(cache) / f"{tag or 'feat'}-{view}-{size}-{_key(paths, view, size, tag)}.npz"
    return _views(paths, size, views, seed, file, lambda xb: {"x": body(xb).numpy()},
                  "features", progress)["x"]


def trunk(backbone, split: int):  # noqa: ANN001, ANN201
    """The frozen part of the backbone: stem and blocks[:split] (what late fine-tuning keeps)."""
    import torch

    class Trunk(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = backbone

        def forward(self, x):  # noqa: ANN001, ANN202
            x = self.net.bn1(self.net.conv_stem(x))
            for block in self.net.blocks[:split]:
                x = block(x)
            return x

    return Trunk().eval()


def rest(backbone, split: int):  # noqa: ANN001, ANN201
    """blocks[split:] + conv_head + pooling + classifier: trunk output -> 1000 ImageNet logits."""
    import torch

    class Rest(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.Sequential(*backbone.blocks[split:])
            self.conv_head, self.bn2 = backbone.conv_head, backbone.bn2
            self.global_pool, self.classifier = backbone.global_pool, backbone.classifier

        def pooled(self, x):  # noqa: ANN001, ANN202
            return self.global_pool(self.bn2(self.conv_head(self.blocks(x))))

        def forward(self, x):  # noqa: ANN001, ANN202
            return self.classifier(self.pooled(x))

    return Rest().eval()


def compute_trunk(backbone, paths: Sequence[Path], split: int, size: int = 224,  # noqa: ANN001
                  views: int = 0, seed: int = 0, cache: Path | None = CACHE, tag: str = "",
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Trunk activations (float16) and the untouched network's ImageNet logits (the LwF
    teacher) for the served view (`views=0`: shapes (N, C, H, W), (N, 1000)) or for `views`
    augmented views ((views, N, ...)), loaded by fast.ai as `compute` does."""
    view = "served" if views == 0 else f"aug{views}s{seed}"
    key = _key(paths, view, size, f"{tag}-trunk{split}")
    file = None if cache is None else \
        Path(cache) / f"{tag or 'trunk'}-trunk{split}-{view}-{size}-{key}.npz"
    head_part, body = rest(backbone, split), trunk(backbone, split)

    def run(xb):  # noqa: ANN001, ANN202
        h = body(xb)
        return {"acts": h.half().numpy(), "teacher": head_part(h).half().numpy()}

    out = _views(paths, size, views, seed, file, run, f"trunk[:{split}] activations", progress)
    return out["acts"], out["teacher"]
