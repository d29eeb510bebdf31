"""Decode time of each camera photo, with teddywatch's decoding shortcuts off and on.

    .venv/bin/python bench/decode_photos.py [--data ../shared/data] [--min-size 224]

"Off" is Pillow alone (JPEG draft mode, WebP decoded at full size then reduced); "on" adds the
1/8-scale scans of progressive JPEGs (`teddywatch.jpeg`) and libwebp's scaled decoding
(`teddywatch.webp`). Best of 3 per file, one thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from teddywatch import imaging  # noqa: E402


def best_of_3(path: Path, min_size: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        imaging.decode(path, min_size)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--min-size", type=int, default=224)
    a = ap.parse_args(argv)
    photos = sorted(p for p in (a.data / "photos").glob("*") if p.is_file())
    if not photos:
        print(f"skipped: no photos in {a.data / 'photos'}")
        return 0
    on = {p: best_of_3(p, a.min_size) for p in photos}
    imaging.scaled_decoder = lambda: None  # the shortcuts off: Pillow alone
    imaging.eighth_scale_scans = lambda data: None
    off = {p: best_of_3(p, a.min_size) for p in photos}
    for p in photos:
        print(f"{p.name:16} {off[p] * 1000:6.0f} -> {on[p] * 1000:5.0f} ms")
    print(f"total {sum(off.values()):.2f} -> {sum(on.values()):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
