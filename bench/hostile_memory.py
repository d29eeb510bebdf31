"""Peak memory of `teddywatch classify` and of the watch service on a burst of 1,000 odd files.

Writes the burst into a temp folder (generated here, nothing downloaded): 6000×6000 RGBA PNGs
(the kind that took 3.3 GB for 16 of them), 16-bit RGB and greyscale PNGs, palette PNGs and GIFs,
big RGBA/CMYK/float/bilevel TIFFs, LA PNGs, 81 Mpx greyscale PNGs just under the 90 Mpx limit,
images over it, and about 900 small files of every mode, truncated copies and junk bytes. Then:

- classify: `teddywatch classify BURST --format csv`; peak RSS from the child's rusage;
- service (unless --no-service): `teddywatch run --headless` watching an empty folder, the burst
  renamed into it at once; peak RSS (VmHWM) once every file has its row.

Both decode in child processes (teddywatch.decoders), so each run also samples, every 10 ms, the
RSS of the teddywatch process and of all its descendants, and reports the largest sum seen
(`peak_total_rss_mb`: the number the 400 MB target applies to), the largest sum of the
descendants alone, each process's share at that moment, and the largest sum of their PSS.
Summed RSS counts the pages they share (Python, Pillow's libraries) once per process, so it
overstates what they take together (PSS counts each shared page once); sampling may miss a
peak shorter than 10 ms.

The subprocesses import teddywatch from --code (default: this checkout), which the result
records. Not a test: numbers, no asserts.

    PYTHONPATH=. .venv/bin/python bench/hostile_memory.py [--code DIR] [--no-service]
        [--out bench/results/hostile_memory.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
TOTAL = 1000
TARGET_MB = 400


def _smooth(w: int, h: int, bands: int, seed: int) -> np.ndarray:
    """Gradients with a little texture: real-looking pixels that compress (small files)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    planes = []
    for band in range(bands):
        a, b = rng.uniform(0.2, 1.0, 2)
        plane = (a * x + b * y + 40 * band) % 256
        planes.append(plane.astype(np.uint8))
    out = np.stack(planes, axis=-1)
    tile = rng.integers(0, 256, (64, 64, bands), dtype=np.uint8)
    out[:64, :64] = tile[:min(h, 64), :min(w, 64)]  # one noisy corner
    return out if bands > 1 else out[..., 0]


def _big_kinds() -> list[tuple[str, int, callable]]:
    """(file name pattern, how many, writer(path)) for the large files."""
    def rgba_png(p: Path) -> None:
        Image.fromarray(_smooth(6000, 6000, 4, 1), "RGBA").save(p, compress_level=1)

    def rgb16_png(p: Path) -> None:
        _png16_rgb(p, (_smooth(4000, 3000, 3, 2).astype(np.uint16) * 257).astype(">u2"))

    def grey16_png(p: Path) -> None:
        Image.fromarray(_smooth(6000, 4000, 1, 3).astype(np.uint16) * 257).save(p, compress_level=1)

    def palette_png(p: Path) -> None:
        im = Image.fromarray(_smooth(5000, 5000, 3, 4), "RGB").quantize(200)
        im.save(p, transparency=0, compress_level=1)

    def palette_gif(p: Path) -> None:
        Image.fromarray(_smooth(4000, 3000, 3, 5), "RGB").quantize(128).save(p)

    def rgba_tif(p: Path) -> None:
        Image.fromarray(_smooth(5000, 5000, 4, 6), "RGBA").save(p, compression="tiff_adobe_deflate")

    def cmyk_tif(p: Path) -> None:
        Image.fromarray(_smooth(6000, 4000, 4, 7), "CMYK").save(p, compression="tiff_lzw")

    def float_tif(p: Path) -> None:
        Image.fromarray(_smooth(4000, 3000, 1, 8).astype(np.float32), "F").save(p)

    def bilevel_tif(p: Path) -> None:
        Image.fromarray(_smooth(10000, 8000, 1, 9)).convert("1").save(
            p, compression="group4")

    def la_png(p: Path) -> None:
        Image.fromarray(_smooth(5000, 5000, 2, 10), "LA").save(p, compress_level=1)

    def grey_81mpx_png(p: Path) -> None:
        Image.fromarray(_smooth(9000, 9000, 1, 11)).save(p, compress_level=1)

    def over_limit_png(p: Path) -> None:
        Image.new("L", (12000, 8000), 128).save(p, compress_level=1)

    def camera_jpg(p: Path) -> None:
        Image.fromarray(_smooth(6000, 4000, 3, 12), "RGB").save(p, quality=90)

    return [("rgba-6000-{}.png", 16, rgba_png), ("rgb16-{}.png", 8, rgb16_png),
            ("grey16-{}.png", 8, grey16_png), ("palette-{}.png", 8, palette_png),
            ("palette-{}.gif", 8, palette_gif), ("rgba-{}.tif", 6, rgba_tif),
            ("cmyk-{}.tif", 6, cmyk_tif), ("float-{}.tif", 4, float_tif),
            ("bilevel-{}.tif", 4, bilevel_tif), ("la-{}.png", 4, la_png),
            ("grey81mpx-{}.png", 6, grey_81mpx_png), ("over-limit-{}.png", 4, over_limit_png),
            ("camera-{}.jpg", 8, camera_jpg)]


def _png16_rgb(path: Path, big_endian: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow has no 16-bit RGB mode to save from)."""
    import struct
    import zlib

    h, w = big_endian.shape[:2]
    raw = b"".join(b"\x00" + big_endian[row].tobytes() for row in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2,
                                                                     0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


SMALL_MODES = ["RGB", "RGBA", "L", "LA", "P", "I;16", "I", "F", "CMYK", "1"]
SMALL_FORMATS = {"RGB": ["PNG", "JPEG", "WEBP", "BMP", "GIF"], "RGBA": ["PNG", "WEBP", "TIFF"],
                 "L": ["PNG", "JPEG", "BMP"], "LA": ["PNG"], "P": ["PNG", "GIF", "BMP"],
                 "I;16": ["PNG", "TIFF"], "I": ["TIFF"], "F": ["TIFF"], "CMYK": ["JPEG", "TIFF"],
                 "1": ["PNG", "TIFF", "BMP"]}
EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tif"}


def _small(rng: random.Random, index: int) -> tuple[str, bytes]:
    mode = rng.choice(SMALL_MODES)
    fmt = rng.choice(SMALL_FORMATS[mode])
    w, h = rng.randint(16, 900), rng.randint(16, 900)
    base = _smooth(w, h, 3, index)
    im = Image.fromarray(base, "RGB")
    if mode == "I;16":
        im = Image.fromarray(base[..., 0].astype(np.uint16) * 257)
    elif mode in ("I", "F"):
        im = Image.fromarray(base[..., 0].astype(np.int32 if mode == "I" else np.float32), mode)
    elif mode == "P":
        im = im.quantize(64)
    elif mode != "RGB":
        im = im.convert(mode)
    data = io.BytesIO()
    im.save(data, fmt)
    blob = data.getvalue()
    roll = rng.random()
    name = f"small-{index:04d}-{mode.replace(';', '')}.{EXT[fmt]}"
    if roll < 0.08:
        blob = blob[:rng.randint(1, max(1, len(blob) - 1))]  # truncated download
        name = "cut-" + name
    elif roll < 0.11:
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4000)))
        name = f"junk-{index:04d}.jpg"
    elif roll < 0.14:
        name = name.rsplit(".", 1)[0] + ".jpg"  # wrong extension
    return name, blob


def write_burst(folder: Path) -> dict[str, int]:
    """The 1,000 files; returns how many of each kind."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, int] = {}
    made = 0
    for pattern, count, writer in _big_kinds():
        first = folder / pattern.format(0)
        writer(first)
        for n in range(1, count):
            shutil.copyfile(first, folder / pattern.format(n))
        kinds[pattern.format("N")] = count
        made += count
    rng = random.Random(14)
    small = 0
    while made < TOTAL:
        name, blob = _small(rng, made)
        (folder / name).write_bytes(blob)
        made += 1
        small += 1
    kinds["small, truncated, junk, misnamed"] = small
    return kinds


class TreeSampler:
    """The largest summed RSS of a process and its descendants, sampled on a thread."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        self.pid, self.every = pid, every
        self.peak_total = self.peak_children = self.peak_pss = 0
        self.at_peak: list[int] = []  # teddywatch's own RSS, then each decoder's, at the peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_total_rss_mb": round(self.peak_total / 1024),
                "peak_decoders_rss_mb": round(self.peak_children / 1024),
                "at_peak_rss_mb": [round(kb / 1024) for kb in self.at_peak],
                "peak_total_pss_mb": round(self.peak_pss / 1024)}

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            own = _rss_kb(self.pid)
            if own is None:
                return
            children = _descendants(self.pid)
            each = [_rss_kb(child) or 0 for child in children]
            theirs = sum(each)
            if own + theirs > self.peak_total:
                self.peak_total, self.at_peak = own + theirs, [own, *each]
            self.peak_children = max(self.peak_children, theirs)
            self.peak_pss = max(self.peak_pss, sum(_pss_kb(pid) for pid in [self.pid, *children]))


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _pss_kb(pid: int) -> int:
    """Proportional set size: each shared page counted once across the processes sharing it."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return 0


def _env(root: Path, code: Path) -> dict[str, str]:
    home = root / "home"
    return dict(os.environ, PYTHONPATH=str(code), HOME=str(home),
                XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
                XDG_STATE_HOME=str(home / ".state"), XDG_CACHE_HOME=str(home / ".cache"))


def imported_from(env: dict[str, str], code: Path) -> str:
    return subprocess.run([sys.executable, "-c", "import teddywatch; print(teddywatch.__file__)"],
                          capture_output=True, text=True, env=env, cwd=code,
                          check=True).stdout.strip()


def run_classify(root: Path, burst: Path, env: dict[str, str], code: Path) -> dict:
    """Peak RSS from this child's own rusage (wait4). The burst was written by another child, so
    this process stays small: a child started with vfork inherits its parent's high-water mark."""
    started = time.perf_counter()
    with open(root / "classify.csv", "w+", encoding="utf-8") as out, \
            open(root / "classify-stderr.txt", "w+", encoding="utf-8") as err:
        proc = subprocess.Popen([sys.executable, "-m", "teddywatch", "classify", str(burst),
                                 "--format", "csv"], stdout=out, stderr=err, env=env, cwd=code)
        sampler = TreeSampler(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        sampled = sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        rows = list(csv.DictReader(out))
        err_text = err.read()
    seconds = time.perf_counter() - started
    peak_kb = usage.ru_maxrss
    return {"exit_code": proc.returncode, "rows": len(rows),
            "errors": sum(r["status"] == "error" for r in rows),
            "too_slow_or_crashed": _stopped([r["detail"] for r in rows]),
            "seconds": round(seconds, 1), "traceback_on_stderr": "Traceback" in err_text,
            "peak_rss_mb": round(peak_kb / 1024), **sampled}


def run_service(root: Path, burst: Path, env: dict[str, str], code: Path) -> dict:
    inbox, log = root / "inbox", root / "results.csv"
    inbox.mkdir()
    config = root / "config.toml"
    config.write_text(f"[[watch]]\npath = '{inbox}'\n\n[log]\npath = '{log}'\n\n"
                      "[notify]\nenabled = false\n\n[gallery]\nenabled = false\n\n"
                      "[service]\nqueue_size = 2000\n", encoding="utf-8")
    stderr = open(root / "service-stderr.txt", "w+", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "teddywatch", "--config", str(config), "run",
                             "--headless"], stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                            cwd=code)
    sampler = TreeSampler(proc.pid)
    try:
        deadline = time.monotonic() + 120
        while "watching " not in (root / "service-stderr.txt").read_text(encoding="utf-8"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("service did not start:\n"
                                 + (root / "service-stderr.txt").read_text(encoding="utf-8"))
            time.sleep(0.05)
        names = sorted(p.name for p in burst.iterdir())
        started = time.perf_counter()
        for name in names:  # one burst: renames within the same file system
            os.rename(burst / name, inbox / name)
        deadline = time.monotonic() + 1800
        rows = 0
        while rows < len(names) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            rows = _rows(log)
        seconds = time.perf_counter() - started
        peak = _vm_hwm_mb(proc.pid)
        sampled = sampler.stop()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
    text = (root / "service-stderr.txt").read_text(encoding="utf-8")
    with open(log, encoding="utf-8", newline="") as f:
        details = [row.get("detail", "") for row in csv.DictReader(f)]
    return {"rows": rows, "files": len(names), "seconds": round(seconds, 1),
            "too_slow_or_crashed": _stopped(details),
            "alive_until_stopped": proc.returncode == 0, "traceback_on_stderr": "Traceback" in text,
            "peak_rss_mb": peak, **sampled}


def _stopped(details: list[str]) -> list[str]:
    """The reasons of files whose decoder was stopped (time limit) or crashed."""
    return [d for d in details if d.startswith(("took longer than", "the decoder crashed"))]


def _rows(log: Path) -> int:
    if not log.exists():
        return 0
    with open(log, encoding="utf-8", errors="replace", newline="") as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


def _vm_hwm_mb(pid: int) -> int | None:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--code", type=Path, default=REPO,
                        help="the checkout whose teddywatch is measured (default: this one)")
    parser.add_argument("--no-service", action="store_true", help="measure classify only")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/hostile_memory.json")
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # the child that writes
    args = parser.parse_args()
    if args.write:
        print(json.dumps(write_burst(args.write)))
        return 0
    code = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="teddywatch-hostile-") as tmp:
        root = Path(tmp)
        env = _env(root, code)
        (root / "home").mkdir()
        source = imported_from(env, code)
        print(f"teddywatch from {source}; writing {TOTAL} files ...", file=sys.stderr)
        burst = root / "burst"
        # Written by a child: this process stays small (see run_classify).
        kinds = json.loads(subprocess.run([sys.executable, __file__, "--write", str(burst)],
                                          check=True, capture_output=True, text=True).stdout)
        size_mb = sum(p.stat().st_size for p in burst.iterdir()) / 1e6
        print(f"burst: {TOTAL} files, {size_mb:.0f} MB; classify ...", file=sys.stderr)
        result = {"command": "PYTHONPATH=. .venv/bin/python bench/hostile_memory.py",
                  "teddywatch": source, "files": TOTAL, "burst_mb": round(size_mb),
                  "kinds": kinds, "target_peak_rss_mb": TARGET_MB, "cpus": os.cpu_count(),
                  "classify": run_classify(root, burst, env, code)}
        print(json.dumps(result["classify"]), file=sys.stderr)
        if not args.no_service:
            print("service ...", file=sys.stderr)
            result["service"] = run_service(root, burst, env, code)
            print(json.dumps(result["service"]), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
