"""teddywatch vs fast.ai: throughput, start-up and memory, on the same images and the same model.

    make bench                                     # = .venv/bin/python bench/run.py --data ../shared/data
    .venv/bin/python bench/run.py --data ../shared/data --quick      # a short run (~2 min)
    .venv/bin/python bench/run.py --data DIR --only peer,onnx --models /tmp/m   # some paths

Every measured path runs in its own process, started fresh, so start-up and peak memory are
honest: peak RSS is the child's `ru_maxrss` from wait4() (VmHWM for the long-running service).

Throughput at steady state, without start-up: each program classifies 2N images and prints a
row per image as soon as it has it (the service appends a row to its results log); rows are
timestamped as they arrive. The rate is the rows that arrived after the N-th row (and after the
batch that carried it) over the time they took; start-up is the time the first row would have
arrived at that rate (the intercept), i.e. imports + model load + warm-up.

Paths, each on web-sized bear images (~400 px) and on camera photos (9-37 MP):
  peer       load_learner + learn.predict, one image at a time (fast.ai course, desktop ports)
  getpreds   learn.get_preds on learn.dls.test_dl(files): fast.ai's own batched path
  fastai     teddywatch classify --engine fastai
  onnx       teddywatch classify --engine onnx, fp32 model (models/bears.onnx)
  int8       teddywatch classify --engine onnx, int8 model (models/bears-int8.onnx), if present
  ceiling    onnxruntime's bare forward pass on pre-decoded tensors, best batch size
  service    teddywatch run --headless: ready time, idle RSS, drop-to-row latency (p50/p95),
             a burst of 2N files dropped at once; and (full run) a 2,000-file burst's peak RSS

Results: a markdown table on stdout and bench/results/latest.json (with the machine, the load
average before and after, and every raw number).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
PATHS_PY = str(Path(__file__).resolve().parent / "paths.py")
ALL_PATHS = ("peer", "getpreds", "fastai", "onnx", "int8", "ceiling", "service")


@dataclass
class Run:
    """One measured process."""

    path: str
    images: str
    n: int  # rows expected: 2N
    rate: float | None = None  # images/s at steady state
    startup_s: float | None = None
    first_row_s: float | None = None
    total_s: float | None = None
    peak_rss_mb: float | None = None
    rows: int = 0
    ok: bool = True
    note: str = ""
    extra: dict = field(default_factory=dict)


# --- helpers --------------------------------------------------------------------------------

def steady_rate(times: list[float], n: int) -> tuple[float | None, float | None]:
    """(images/s after the N-th row, start-up intercept) from row arrival times (2N rows)."""
    if len(times) < 2 * n or n < 1:
        return None, None
    t_n = times[n - 1]
    # Rows that came in the same burst as row N (one batch) belong before the mark.
    k1 = n
    while k1 < len(times) and times[k1] - t_n < 1e-3:
        k1 += 1
    t1 = times[k1 - 1]
    t2 = times[2 * n - 1]
    if k1 >= 2 * n or t2 <= t1:
        return None, None
    rate = (2 * n - k1) / (t2 - t1)
    return rate, max(0.0, t1 - k1 / rate)


def run_rows(cmd: list[str], env: dict, skip_header: bool = False,
             timeout: float = 1800) -> tuple[list[float], int, float, int, str]:
    """Start `cmd`, timestamp each stdout line; (times, maxrss_kb, wall_s, exit status, stderr).

    ru_maxrss from wait4 is the child's own peak, but Linux starts it at the parent's peak when
    the child is spawned with vfork, so this process must stay small: it imports no numpy,
    onnxruntime or torch.
    """
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT,
                            bufsize=0)
    times: list[float] = []
    header = skip_header
    buf = b""
    assert proc.stdout is not None
    while True:
        chunk = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
        now = time.perf_counter() - start
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for _ in lines:
            if header:
                header = False
                continue
            times.append(now)
        if now > timeout:
            proc.kill()
            break
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    tail = err.read().decode(errors="replace")[-2000:]
    return times, usage.ru_maxrss, wall, proc.returncode, tail


def child_env(home: Path) -> dict:
    """A clean environment: the user's config, data and caches are not read or written."""
    env = dict(os.environ)
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                     ("XDG_STATE_HOME", "state"), ("XDG_CACHE_HOME", "cache")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("TEDDYWATCH_CONFIG", None)
    return env


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    from importlib import metadata  # versions without importing torch here: see run_rows

    versions = {}
    for dist in ("onnxruntime", "torch", "fastai", "pillow", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "os": platform.platform(),
            "python": platform.python_version(), "versions": versions, "commit": commit}


def image_sets(data: Path, quick: bool) -> dict[str, list[str]]:
    web = sorted(str(p) for p in (data / "bears").glob("*/*") if p.is_file())
    photos = sorted(str(p) for p in (data / "photos").glob("*") if p.is_file())
    if not web or not photos:
        raise SystemExit(f"{data}: expected bears/<label>/* and photos/* images")
    n_web = 32 if quick else 256
    n_cam = 12 if quick else 60  # 10 rounds of the 12 photos: the rate window spans whole rounds
    # 2N files each; camera photos are cycled (12 files, which differ tenfold in decode time),
    # in the same order for every path.
    return {"web": _cycle(web, 2 * n_web), "camera": _cycle(photos, 2 * n_cam)}


def _cycle(files: list[str], count: int) -> list[str]:
    """`count` files spread evenly over the (label-sorted) list, cycling when there are fewer."""
    if count <= len(files):
        return [files[i * len(files) // count] for i in range(count)]
    return [files[i % len(files)] for i in range(count)]


def write_config(home: Path, inbox: Path, ledger: Path, model: Path) -> Path:
    cfg = home / "bench.toml"
    cfg.write_text(
        f'[[watch]]\npath = "{inbox}"\n\n[model]\npath = "{model}"\n\n'
        f'[log]\npath = "{ledger}"\n\n[notify]\nenabled = false\n\n'
        '[gallery]\nenabled = false\n', encoding="utf-8")
    return cfg


# --- the measured paths ---------------------------------------------------------------------

def measure_rows(name: str, images: str, cmd: list[str], n: int, env: dict,
                 skip_header: bool = False) -> Run:
    times, maxrss, wall, code, err = run_rows(cmd, env, skip_header)
    rate, startup = steady_rate(times, n)
    run = Run(name, images, 2 * n, rate=rate, startup_s=startup,
              first_row_s=times[0] if times else None, total_s=wall,
              peak_rss_mb=maxrss / 1024, rows=len(times), ok=code == 0 and len(times) == 2 * n)
    if not run.ok:
        run.note = f"exit {code}, {len(times)}/{2 * n} rows: {err.strip().splitlines()[-1:]}"
    return run


def measure_ceiling(images: str, model: Path, files: list[str], env: dict,
                    batch_sizes: str, threads: int) -> Run:
    err = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen([PY, PATHS_PY, "ceiling", str(model), batch_sizes, str(threads),
                             *files], stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    run = Run(f"ceiling: onnxruntime forward ({model.name})", images, len(files),
              total_s=time.perf_counter() - start, peak_rss_mb=usage.ru_maxrss / 1024)
    try:
        info = json.loads(out.decode().strip().splitlines()[-1])
        run.rate, run.extra = info["best_rate"], info
        run.note = f"batch {info['best_batch']}"
    except (ValueError, IndexError, KeyError):
        err.seek(0)
        run.ok, run.note = False, err.read().decode(errors="replace")[-300:]
    return run


class Service:
    """`teddywatch run --headless` on a fresh inbox and results log."""

    def __init__(self, home: Path, model: Path, tree: Path | None = None) -> None:
        self.home = home
        self.inbox = home / "inbox"
        self.inbox.mkdir(parents=True)
        self.ledger = home / "results.csv"
        self.cfg = write_config(home, self.inbox, self.ledger, model)
        self.env = child_env(home)
        # --src: that tree's teddywatch, as for classify (not the one installed in the venv)
        self.command = [PY, "-m", "teddywatch"] if tree else [str(BIN / "teddywatch")]
        if tree:
            self.env["PYTHONPATH"] = str(tree.resolve())
        self.proc: subprocess.Popen | None = None
        self.seen = 0
        self._offset = 0
        self._partial = b""

    def start(self, probe: str) -> float:
        """Start with one old file in the inbox; seconds until its row is logged (ready)."""
        target = self.inbox / f"probe{Path(probe).suffix}"
        shutil.copyfile(probe, target)
        old = time.time() - 3600
        os.utime(target, (old, old))
        self.log = open(self.home / "service.log", "wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen([*self.command, "--config", str(self.cfg), "run",
                                      "--headless"], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.home)
        self.wait_rows(1, timeout=120)
        return time.perf_counter() - started

    def rows(self) -> int:
        """Rows in the results log so far (read incrementally)."""
        try:
            with open(self.ledger, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.seen
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            if line.strip() and not line.startswith(b"time,"):  # the ledger's header row
                self.seen += 1
        return self.seen

    def wait_rows(self, count: int, timeout: float = 600, times: list[float] | None = None,
                  t0: float = 0.0) -> None:
        deadline = time.perf_counter() + timeout
        before = self.seen
        while self.rows() < count:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}: "
                                   + (self.home / "service.log").read_text()[-500:])
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.seen}/{count} rows after {timeout} s")
            if times is not None and self.seen > before:
                times += [time.perf_counter() - t0] * (self.seen - before)
                before = self.seen
            time.sleep(0.001)
        if times is not None and self.seen > before:
            times += [time.perf_counter() - t0] * (self.seen - before)

    def status(self, key: str) -> float:
        assert self.proc
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def drop(self, src: str, name: str) -> None:
        """As a user's copy does: write the file in place (inotify close-after-write)."""
        shutil.copyfile(src, self.inbox / name)

    def stop(self) -> float:
        """Stop with SIGINT; the process's peak RSS in MB."""
        assert self.proc
        peak = self.status("VmHWM")
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return peak


def measure_service(images: str, files: list[str], n: int, model: Path, work: Path,
                    latency_count: int, big_burst: int = 0, tree: Path | None = None) -> Run:
    run = Run("teddywatch run --headless (drop into watched folder)", images, 2 * n)
    home = Path(tempfile.mkdtemp(prefix=f"svc-{images}-", dir=work))
    svc = Service(home, model, tree)
    try:
        run.extra["ready_s"] = svc.start(files[0])
        time.sleep(2.0)
        run.extra["idle_rss_mb"] = svc.status("VmRSS")
        # Drop-to-row latency: one file at a time, each waited for.
        unique = list(dict.fromkeys(files))[:latency_count]
        lat = []
        for i, src in enumerate(unique):
            time.sleep(0.05)
            t = time.perf_counter()
            svc.drop(src, f"lat{i:04d}{Path(src).suffix}")
            svc.wait_rows(svc.seen + 1, timeout=60)
            lat.append((time.perf_counter() - t) * 1000)
        run.extra["latency_ms"] = [round(x, 1) for x in lat]
        run.extra["latency_p50_ms"] = round(statistics.median(lat), 1)
        run.extra["latency_p95_ms"] = round(_percentile(lat, 95), 1)
        # A burst: 2N files dropped at once.
        time.sleep(0.5)
        base = svc.seen
        times: list[float] = []
        t0 = time.perf_counter()
        for i, src in enumerate(files):
            svc.drop(src, f"burst{i:05d}{Path(src).suffix}")
        run.extra["drop_s"] = round(time.perf_counter() - t0, 3)
        svc.wait_rows(base + len(files), times=times, t0=t0, timeout=1800)
        run.rate, _ = steady_rate(times, n)
        run.first_row_s, run.total_s, run.rows = times[0], times[-1], len(times)
        run.startup_s = run.extra["ready_s"]
        run.peak_rss_mb = svc.stop()
    except Exception as exc:  # noqa: BLE001 - report, keep the other results
        run.ok, run.note = False, f"{type(exc).__name__}: {exc}"[:300]
        if svc.proc and svc.proc.poll() is None:
            svc.stop()
        return run
    if big_burst:
        home = Path(tempfile.mkdtemp(prefix="svc-big-", dir=work))
        svc = Service(home, model, tree)
        try:
            svc.start(files[0])
            unique = list(dict.fromkeys(files))
            t0 = time.perf_counter()
            for i in range(big_burst):
                src = unique[i % len(unique)]
                svc.drop(src, f"big{i:05d}{Path(src).suffix}")
            svc.wait_rows(1 + big_burst, timeout=1800)
            took = time.perf_counter() - t0
            run.extra["big_burst"] = {"files": big_burst, "drained_s": round(took, 2),
                                      "rate": round(big_burst / took, 1),
                                      "peak_rss_mb": round(svc.stop(), 1)}
        except Exception as exc:  # noqa: BLE001
            run.extra["big_burst"] = {"files": big_burst, "error": str(exc)[:300]}
            if svc.proc and svc.proc.poll() is None:
                svc.stop()
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return run


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- the report -----------------------------------------------------------------------------

def fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def table(runs: list[Run]) -> str:
    out = []
    for images in ("web", "camera"):
        rows = [r for r in runs if r.images == images]
        if not rows:
            continue
        peer = next((r.rate for r in rows if r.path.startswith("peer") and r.rate), None)
        ceil = {r.extra.get("model"): r.rate for r in rows if r.path.startswith("ceiling")}
        out.append(f"\n**{images} images** ({'~400 px bear photos' if images == 'web' else 'camera photos, 9-37 MP'}), "
                   f"{rows[0].n} per run\n")
        out.append("| path | images/s | × peer | % of ceiling | start-up s | peak RSS MB | note |")
        out.append("|---|---:|---:|---:|---:|---:|---|")
        for r in rows:
            model = r.extra.get("model")
            c = ceil.get(model)
            pct = (100 * r.rate / c) if (c and r.rate and not r.path.startswith("ceiling")) else None
            ratio = (r.rate / peer) if (peer and r.rate) else None
            out.append(f"| {r.path} | {fmt(r.rate, '.1f')} | {fmt(ratio, '.1f')} | "
                       f"{fmt(pct, '.0f')} | {fmt(r.startup_s, '.2f')} | "
                       f"{fmt(r.peak_rss_mb, '.0f')} | {r.note} |")
    svc = [r for r in runs if r.path.startswith("teddywatch run") and r.ok]
    if svc:
        out.append("\n**watch service** (`teddywatch run --headless`, model "
                   f"{svc[0].extra.get('model')})\n")
        out.append("| images | ready s | idle RSS MB | drop-to-row p50 ms | p95 ms | "
                   "burst images/s | burst peak RSS MB | 2,000-file burst |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for r in svc:
            e = r.extra
            big = e.get("big_burst")
            big_s = (f"{big['drained_s']} s, {big['rate']}/s, peak {big['peak_rss_mb']} MB"
                     if big and "rate" in big else (big or {}).get("error", "–"))
            out.append(f"| {r.images} | {fmt(e.get('ready_s'), '.2f')} | "
                       f"{fmt(e.get('idle_rss_mb'), '.0f')} | {fmt(e.get('latency_p50_ms'), '.0f')} | "
                       f"{fmt(e.get('latency_p95_ms'), '.0f')} | {fmt(r.rate, '.1f')} | "
                       f"{fmt(r.peak_rss_mb, '.0f')} | {big_s} |")
    return "\n".join(out)


# --- main -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--models", type=Path, default=ROOT / "models",
                        help="folder with bears.pkl, bears.onnx (+ .json), bears-int8.onnx")
    parser.add_argument("--quick", action="store_true", help="fewer images, no 2,000-file burst")
    parser.add_argument("--only", default=",".join(ALL_PATHS),
                        help=f"comma-separated subset of {','.join(ALL_PATHS)}")
    parser.add_argument("--sets", default="web,camera")
    parser.add_argument("--batch-size", type=int, help="teddywatch classify --batch-size")
    parser.add_argument("--threads", type=int, help="teddywatch classify --threads")
    parser.add_argument("--src", type=Path,
                        help="run teddywatch from this source tree instead (e.g. a git worktree "
                             "of an older commit, to measure what a change gained)")
    parser.add_argument("--service-model", choices=("default", "fp32", "int8"), default="default",
                        help="model the watch service runs (default: teddywatch's default)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to this long for the 1-minute load average to drop "
                             "below 0.5 (the machine is shared; torch's OpenMP threads slow down "
                             "tenfold on a busy machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    data = args.data.resolve()
    pkl, fp32, int8 = (args.models / "bears.pkl", args.models / "bears.onnx",
                       args.models / "bears-int8.onnx")
    work = Path(tempfile.mkdtemp(prefix="teddywatch-bench-"))
    env = child_env(work / "home")
    if args.src:
        env["PYTHONPATH"] = str(args.src.resolve())
    cfg = write_config(work / "home", work / "inbox", work / "results.csv", fp32)
    sets = {k: v for k, v in image_sets(data, args.quick).items() if k in args.sets.split(",")}
    deadline = time.monotonic() + args.wait_quiet
    while load_average()[0] >= 0.5 and time.monotonic() < deadline:
        time.sleep(5)
    load_before = load_average()
    if load_before[0] >= 0.5:
        print(f"warning: load average {load_before[0]} (other work on this machine): "
              "expect noisy numbers", file=sys.stderr)
    print(f"machine: {machine()['cpu']}, {os.cpu_count()} cores; load average {load_before}",
          file=sys.stderr)
    runs: list[Run] = []
    teddywatch = [PY, "-m", "teddywatch"] if args.src else [str(BIN / "teddywatch")]
    tw = [*teddywatch, "--config", str(cfg), "classify", "--format", "csv"]
    if args.batch_size:
        tw += ["--batch-size", str(args.batch_size)]
    if args.threads is not None:
        tw += ["--threads", str(args.threads)]

    def report(run: Run) -> None:
        runs.append(run)
        print(f"  {run.images:6} {run.path:55} {fmt(run.rate, '7.1f')} img/s  start-up "
              f"{fmt(run.startup_s, '5.2f')} s  peak {fmt(run.peak_rss_mb, '5.0f')} MB {run.note}",
              file=sys.stderr, flush=True)

    for images, files in sets.items():
        n = len(files) // 2
        todo: list[tuple[str, str, list[str], bool, str]] = []
        if "peer" in only and pkl.exists():
            todo.append(("peer", "peer: load_learner + learn.predict",
                         [PY, PATHS_PY, "peer", str(pkl), *files], False, "pkl"))
        if "getpreds" in only and pkl.exists():
            todo.append(("getpreds", "fast.ai get_preds on test_dl",
                         [PY, PATHS_PY, "getpreds", str(pkl), str(n), *files], False, "pkl"))
        if "fastai" in only and pkl.exists():
            todo.append(("fastai", "teddywatch classify --engine fastai",
                         [*tw, "--engine", "fastai", "--model", str(pkl), *files], True, "pkl"))
        for key, model in (("onnx", fp32), ("int8", int8)):
            if key in only and model.exists():
                todo.append((key, f"teddywatch classify --engine onnx ({model.name})",
                             [*tw, "--engine", "onnx", "--model", str(model), *files], True,
                             model.name))
        for key, label, cmd, header, model in todo:
            run = measure_rows(label, images, cmd, n, env, skip_header=header)
            run.extra["model"] = model
            report(run)
        if "ceiling" in only:
            for model in (fp32, int8):
                if model.exists():
                    run = measure_ceiling(images, model, files, env, "1,4,8,16,32",
                                          args.threads or 0)
                    run.extra["model"] = model.name
                    report(run)
        if "service" in only:
            wanted = args.service_model
            if wanted == "default":
                wanted = "int8" if _default_model_name() == int8.name else "fp32"
            default = int8 if wanted == "int8" and int8.exists() else fp32
            run = measure_service(images, files, n, default, work,
                                  latency_count=20 if images == "web" else 12,
                                  big_burst=0 if args.quick or images != "web" else 2000,
                                  tree=args.src)
            run.extra["model"] = default.name
            report(run)

    result = {
        "command": " ".join([Path(PY).name, "bench/run.py", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "quick": args.quick,
        "nice": os.nice(0),
        "models": {p.name: p.stat().st_size for p in (pkl, fp32, int8) if p.exists()},
        "runs": [asdict(r) for r in runs],
    }
    text = table(runs)
    result["table_markdown"] = text
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    m = result["machine"]
    print(f"\nMeasured on {m['cpu']} ({m['cores']} cores, {m['memory']}), {m['os']}, "
          f"Python {m['python']}, onnxruntime {m['versions']['onnxruntime']}, torch "
          f"{m['versions']['torch']}, fastai {m['versions']['fastai']}; load average "
          f"{load_before} before, {result['load_average_after']} after.")
    print(text)
    print(f"\n(written to {args.out})")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.ok for r in runs) else 1


def _default_model_name() -> str:
    try:
        sys.path.insert(0, str(ROOT))
        from teddywatch.resources import DEFAULT_MODEL_NAME

        return DEFAULT_MODEL_NAME
    except Exception:  # noqa: BLE001
        return "bears.onnx"


if __name__ == "__main__":
    sys.exit(main())
