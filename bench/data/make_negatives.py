"""Build the non-bear ("other") images for training and for the quality report.

    python bench/data/make_negatives.py OUT_DIR            # writes OUT_DIR/{train,report}/other/

Nothing is downloaded: the photos are the sample images that ship inside installed packages
(scikit-image's `skimage/data`, scikit-learn's `load_sample_images`, matplotlib's `sample_data`),
and the rest are pictures rendered here (shapes, gradients, noise, charts, text, stripes, cartoon
scenes, plain colours).

Split by SOURCE: every photo, and every render kind marked `report` below, belongs to exactly one
pool, and the crops/flips of a picture stay in its pool, so nothing in `report` was trained on or
is a crop of something trained on. Render kinds used in both pools draw different random seeds.
The set is deterministic (fixed seeds). `manifest.json` in OUT_DIR lists every file with its pool,
source and licence. Sources whose package is missing are skipped with a note (scikit-image is
needed for most photos: `pip install scikit-image`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

MAX_SIDE = 384  # like the shared bear photos

# (pool, loader id, what it shows). Report photos: a cat, a person, faces, objects, a flower,
# space, a motorbike, gravel, a printed page, a logo.
PHOTOS = [
    ("train", "skimage:astronaut", "person in a space suit"),
    ("train", "skimage:camera", "man with a camera (grey)"),
    ("train", "skimage:coins", "coins (grey)"),
    ("train", "skimage:horse", "horse silhouette (binary)"),
    ("train", "skimage:retina", "retina photo"),
    ("train", "skimage:brick", "brick wall (grey)"),
    ("train", "skimage:grass", "grass (grey)"),
    ("train", "skimage:moon", "moon surface (grey)"),
    ("train", "skimage:text", "text on a sign (grey)"),
    ("train", "skimage:logo", "scikit-image logo"),
    ("train", "skimage:color", "colour wheel chart"),
    ("train", "skimage:ihc", "microscopy slide"),
    ("train", "skimage:cell", "cell microscopy (grey)"),
    ("train", "skimage:clock_motion", "clock, motion blurred (grey)"),
    ("train", "sklearn:china", "temple in China"),
    ("train", "matplotlib:Minduka_Present_Blue_Pack.png", "gift box drawing"),
    ("report", "skimage:chelsea", "cat (Chelsea)"),
    ("report", "matplotlib:grace_hopper.jpg", "person (Grace Hopper portrait)"),
    ("report", "skimage:coffee", "cup of coffee"),
    ("report", "skimage:rocket", "rocket launch"),
    ("report", "sklearn:flower", "flower"),
    ("report", "skimage:hubble_deep_field", "galaxies"),
    ("report", "skimage:motorcycle_left", "motorcycle"),
    ("report", "skimage:gravel", "gravel (grey)"),
    ("report", "skimage:page", "printed page (grey)"),
    ("report", "matplotlib:logo2.png", "matplotlib logo"),
]
LICENCES = {
    "skimage": "scikit-image sample data (public domain / CC0 / BSD per skimage/data/README)",
    "sklearn": "CC BY 2.0, Flickr (see sklearn/datasets/images/README.txt)",
    "matplotlib": "matplotlib sample_data (matplotlib licence; grace_hopper.jpg is public domain)",
    "render": "rendered by this script (project licence)",
}
CROPS = {"train": 15, "report": 8}
LFW_REPORT = 20  # scikit-image's lfw_subset faces (25x25 px), all in the report pool

# Render kinds: (name, pools). Kinds listed only under report are never trained on.
RENDERS = [
    ("shapes", ("train", "report")),
    ("gradient", ("train", "report")),
    ("noise", ("train", "report")),
    ("barchart", ("train", "report")),
    ("text", ("train", "report")),
    ("stripes", ("train", "report")),
    ("cartoon", ("report",)),
    ("linechart", ("report",)),
    ("plain", ("report",)),
]
RENDER_COUNT = {"train": 12, "report": 8}


def load_photo(key: str) -> Image.Image | None:
    pkg, name = key.split(":", 1)
    try:
        if pkg == "skimage":
            import skimage

            path = Path(skimage.__file__).parent / "data"
            hits = sorted(path.glob(name + ".*"))
            if not hits:
                return None
            return Image.open(hits[0]).convert("RGB")
        if pkg == "sklearn":
            import sklearn

            return Image.open(Path(sklearn.__file__).parent / "datasets/images" / f"{name}.jpg"
                              ).convert("RGB")
        if pkg == "matplotlib":
            import matplotlib

            return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / name
                              ).convert("RGB")
    except (ImportError, OSError):
        return None
    return None


def fit(im: Image.Image) -> Image.Image:
    s = MAX_SIDE / max(im.size)
    if s < 1:
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))),
                       Image.Resampling.BICUBIC)
    return im


def random_crop(im: Image.Image, rng: random.Random) -> Image.Image:
    w, h = im.size
    for _ in range(10):
        area = w * h * rng.uniform(0.15, 0.9)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 32 <= cw <= w and 32 <= ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            out = im.crop((x, y, x + cw, y + ch))
            break
    else:
        out = im.copy()
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return out


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(0, 255) for _ in range(3))  # type: ignore[return-value]


def render(kind: str, rng: random.Random) -> Image.Image:
    w, h = rng.choice([(384, 288), (288, 384), (384, 384), (320, 240)])
    if kind == "shapes":
        im = Image.new("RGB", (w, h), _colour(rng))
        d = ImageDraw.Draw(im)
        for _ in range(rng.randint(3, 12)):
            x0, y0 = rng.randint(-50, w), rng.randint(-50, h)
            x1, y1 = x0 + rng.randint(20, 200), y0 + rng.randint(20, 200)
            shape = rng.choice(["ellipse", "rectangle", "polygon", "line"])
            if shape == "ellipse":
                d.ellipse((x0, y0, x1, y1), fill=_colour(rng))
            elif shape == "rectangle":
                d.rectangle((x0, y0, x1, y1), fill=_colour(rng))
            elif shape == "polygon":
                d.polygon([(rng.randint(0, w), rng.randint(0, h)) for _ in range(rng.randint(3, 6))],
                          fill=_colour(rng))
            else:
                d.line((x0, y0, x1, y1), fill=_colour(rng), width=rng.randint(2, 12))
        return im
    if kind == "gradient":
        a, b = np.array(_colour(rng), float), np.array(_colour(rng), float)
        yy, xx = np.mgrid[0:h, 0:w]
        if rng.random() < 0.5:
            ang = rng.uniform(0, 2 * math.pi)
            t = (xx * math.cos(ang) + yy * math.sin(ang))
        else:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            t = np.hypot(xx - cx, yy - cy)
        t = (t - t.min()) / (np.ptp(t) + 1e-9)
        arr = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if kind == "noise":
        nrng = np.random.default_rng(rng.randint(0, 2**31))
        arr = nrng.random((h // 8 + 1, w // 8 + 1, 3)) if rng.random() < 0.5 else nrng.random((h, w, 3))
        im = Image.fromarray((arr * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 4)))
        if rng.random() < 0.3:
            im = im.convert("L").convert("RGB")
        return im
    if kind in ("barchart", "linechart"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        nrng = np.random.default_rng(rng.randint(0, 2**31))
        fig, ax = plt.subplots(figsize=(w / 96, h / 96), dpi=96)
        if kind == "barchart":
            n = rng.randint(3, 10)
            ax.bar(range(n), nrng.random(n) * 10, color=[np.array(_colour(rng)) / 255] * n)
            if rng.random() < 0.5:
                ax.scatter(nrng.random(30) * n, nrng.random(30) * 10, c="k", s=8)
        elif rng.random() < 0.5:
            for _ in range(rng.randint(1, 4)):
                ax.plot(np.cumsum(nrng.normal(size=50)))
        else:
            ax.pie(nrng.random(rng.randint(2, 6)) + 0.1)
        ax.set_title(rng.choice(["Sales", "Results", "Q3", "Temperature", "Load"]))
        fig.canvas.draw()
        im = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
        return im
    if kind == "text":
        im = Image.new("RGB", (w, h), (250, 250, 245) if rng.random() < 0.7 else _colour(rng))
        d = ImageDraw.Draw(im)
        words = ("the quick brown fox jumps over lazy dog invoice total report meeting notes "
                 "teddywatch folder image python weather lorem ipsum dolor sit amet").split()
        size = rng.randint(12, 36)
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:
            font = ImageFont.load_default()
        y = 5
        while y < h:
            d.text((5, y), " ".join(rng.choice(words) for _ in range(8)),
                   fill=(0, 0, 0) if rng.random() < 0.8 else _colour(rng), font=font)
            y += size + 4
        return im
    if kind == "stripes":
        yy, xx = np.mgrid[0:h, 0:w]
        period = rng.randint(4, 60)
        if rng.random() < 0.5:
            m = ((xx // period + yy // period) % 2).astype(bool)
        else:
            ang = rng.uniform(0, math.pi)
            m = ((xx * math.cos(ang) + yy * math.sin(ang)) // period % 2).astype(bool)
        a, b = np.array(_colour(rng), np.uint8), np.array(_colour(rng), np.uint8)
        return Image.fromarray(np.where(m[..., None], a, b))
    if kind == "cartoon":
        im = Image.new("RGB", (w, h), (110 + rng.randint(-30, 30), 170, 240))
        d = ImageDraw.Draw(im)
        gy = int(h * rng.uniform(0.55, 0.8))
        d.rectangle((0, gy, w, h), fill=(60, 160 + rng.randint(-40, 40), 60))
        sx, sy = rng.randint(0, w), rng.randint(0, gy // 2)
        d.ellipse((sx - 25, sy - 25, sx + 25, sy + 25), fill=(255, 220, 0))
        for _ in range(rng.randint(1, 3)):  # houses
            hx = rng.randint(0, w - 80)
            hw, hh = rng.randint(50, 110), rng.randint(40, 90)
            d.rectangle((hx, gy - hh, hx + hw, gy), fill=_colour(rng))
            d.polygon([(hx - 8, gy - hh), (hx + hw + 8, gy - hh), (hx + hw // 2, gy - hh - 40)],
                      fill=(150, 30, 30))
            d.rectangle((hx + hw // 2 - 8, gy - 25, hx + hw // 2 + 8, gy), fill=(90, 50, 20))
        for _ in range(rng.randint(1, 4)):  # trees
            tx = rng.randint(0, w)
            d.rectangle((tx - 5, gy - 50, tx + 5, gy), fill=(100, 60, 20))
            d.ellipse((tx - 25, gy - 95, tx + 25, gy - 40), fill=(20, 120 + rng.randint(0, 60), 20))
        return im
    if kind == "plain":
        return Image.new("RGB", (w, h), rng.choice([(255, 255, 255), (0, 0, 0), _colour(rng)]))
    raise ValueError(kind)


def build(out: Path, seed: int = 0) -> dict:
    manifest: list[dict] = []
    skipped: list[str] = []

    def save(im: Image.Image, pool: str, name: str, source: str, licence: str) -> None:
        d = out / pool / "other"
        d.mkdir(parents=True, exist_ok=True)
        fit(im.convert("RGB")).save(d / name, quality=90)
        manifest.append({"file": f"{pool}/other/{name}", "pool": pool, "source": source,
                         "licence": licence})

    for pool, key, what in PHOTOS:
        im = load_photo(key)
        if im is None:
            skipped.append(key)
            continue
        pkg, stem = key.split(":", 1)
        stem = Path(stem).stem
        rng = random.Random(f"{seed}:{key}")
        save(im, pool, f"{pkg}_{stem}_full.jpg", key, LICENCES[pkg])
        for i in range(CROPS[pool]):
            save(random_crop(im, rng), pool, f"{pkg}_{stem}_crop{i:02d}.jpg", key, LICENCES[pkg])
    try:
        import skimage

        faces = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")
        for i in range(LFW_REPORT):
            arr = (faces[i * 7 % len(faces)] * 255).clip(0, 255).astype(np.uint8)
            im = Image.fromarray(arr).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
            save(im, "report", f"skimage_lfw_{i:02d}.jpg", "skimage:lfw_subset", LICENCES["skimage"])
    except (ImportError, OSError):
        skipped.append("skimage:lfw_subset")
    for kind, pools in RENDERS:
        for pool in pools:
            rng = random.Random(f"{seed}:{kind}:{pool}")
            for i in range(RENDER_COUNT[pool]):
                save(render(kind, rng), pool, f"render_{kind}_{i:02d}.jpg", f"render:{kind}",
                     LICENCES["render"])
    info = {"seed": seed, "files": manifest, "skipped_sources": skipped,
            "counts": {p: sum(m["pool"] == p for m in manifest) for p in ("train", "report")}}
    (out / "manifest.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    info = build(a.out, a.seed)
    print(f"{a.out}: {info['counts']['train']} train, {info['counts']['report']} report images"
          + (f"; skipped (package missing): {', '.join(info['skipped_sources'])}"
             if info["skipped_sources"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
