"""End-to-end figures for the watch service, measured the way a user experiences it.

Runs `teddywatch run --headless` in a subprocess on temp folders (HOME and XDG dirs in a temp
dir too) with the default model, then:

- latency: drops one fixture image at a time (write + close) and times drop -> row in the log,
  N times; reports p50/p95;
- burst: drops 200 fixture images as fast as it can; files/s from the first drop to the last row;
- big burst (--big): 2,000 tiny images; files/s and peak RSS;
- peak RSS: the service process's VmHWM (Linux) after each run.

    .venv/bin/python bench/service_bench.py [--latency 40] [--burst 200] [--big 2000]
        [--out bench/results/service.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from teddywatch import resources  # noqa: E402
from teddywatch.ledger import read_results  # noqa: E402

FIXTURES = sorted((REPO / "tests" / "fixtures").glob("*.jpg"))


class Service:
    model = resources.default_model_path()

    def __init__(self, root: Path, batch_size: int, queue_size: int) -> None:
        self.root = root
        self.inbox = root / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.log = root / "data" / "results.csv"
        config = root / "config.toml"
        config.write_text("\n".join([
            "[[watch]]", f"path = '{self.inbox}'", "",
            "[model]", f"path = '{self.model}'",
            f"batch_size = {batch_size}", "",
            "[log]", f"path = '{self.log}'", "",
            "[notify]", "enabled = false", "",
            "[service]", f"queue_size = {queue_size}", ""]), encoding="utf-8")
        home = root / "home"
        env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                   XDG_DATA_HOME=str(home / ".local/share"), XDG_STATE_HOME=str(home / ".state"),
                   XDG_CACHE_HOME=str(home / ".cache"))
        self.errors = open(root / "stderr.txt", "w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "teddywatch", "run", "--headless", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=self.errors, env=env, cwd=REPO)
        deadline = time.monotonic() + 120
        while "watching " not in (root / "stderr.txt").read_text(encoding="utf-8"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("service did not start:\n" +
                                 (root / "stderr.txt").read_text(encoding="utf-8"))
            time.sleep(0.02)

    def rows(self) -> int:
        return sum(1 for _ in read_results(self.log))

    def wait_rows(self, count: int, timeout: float = 900) -> float:
        """Polls the log (cheaply: size first) until it holds `count` rows; returns the time."""
        deadline = time.monotonic() + timeout
        last_size = -1
        while True:
            size = self.log.stat().st_size if self.log.exists() else 0
            if size != last_size:
                last_size = size
                if self.rows() >= count:
                    return time.perf_counter()
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {count} rows")
            time.sleep(0.002)

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def latency(root: Path, count: int) -> dict:
    service = Service(root, batch_size=16, queue_size=1000)
    seconds = []
    for n in range(count):
        source = FIXTURES[n % len(FIXTURES)]
        data = source.read_bytes()
        start = time.perf_counter()
        (service.inbox / f"single_{n:03}.jpg").write_bytes(data)
        seconds.append(service.wait_rows(n + 1) - start)
    rss = service.peak_rss_mb()
    service.stop()
    q = statistics.quantiles(seconds, n=20)
    return {"files": count, "p50_ms": round(statistics.median(seconds) * 1000),
            "p95_ms": round(q[18] * 1000), "max_ms": round(max(seconds) * 1000),
            "peak_rss_mb": round(rss)}


def burst(root: Path, count: int, tiny: bool) -> dict:
    service = Service(root, batch_size=16, queue_size=1000)
    staging = root / "staging"
    staging.mkdir()
    for n in range(count):  # prepared first, then renamed in: the burst is the renames
        target = staging / f"burst_{n:05}.jpg"
        if tiny:
            color = tuple(random.Random(n).randrange(256) for _ in range(3))
            Image.new("RGB", (32, 32), color).save(target, "JPEG")
        else:
            shutil.copy(FIXTURES[n % len(FIXTURES)], target)
    start = time.perf_counter()
    for target in sorted(staging.iterdir()):
        os.rename(target, service.inbox / target.name)
    end = service.wait_rows(count)
    rss = service.peak_rss_mb()
    code = service.stop()
    return {"files": count, "tiny": tiny, "seconds": round(end - start, 2),
            "files_per_second": round(count / (end - start), 1), "peak_rss_mb": round(rss),
            "exit_code": code}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=40, help="single drops to time")
    parser.add_argument("--burst", type=int, default=200, help="fixture images in the burst")
    parser.add_argument("--big", type=int, default=0, help="tiny images in a big burst (0: skip)")
    parser.add_argument("--model", type=Path, default=Service.model,
                        help="model file (default: the default model)")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    Service.model = args.model.absolute()
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "cpus": os.cpu_count(), "model": args.model.name,
              "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="tw-bench-") as tmp:
        if args.latency:
            report["single_file_latency"] = latency(Path(tmp) / "latency", args.latency)
        if args.burst:
            report["burst"] = burst(Path(tmp) / "burst", args.burst, tiny=False)
        if args.big:
            report["big_burst"] = burst(Path(tmp) / "big", args.big, tiny=True)
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
