"""Idle cost of `teddywatch run` with the tray: CPU and RSS over 60 s, nothing to classify.

Starts Xvfb + a private D-Bus session bus + dunst (the same helpers as the GUI tests), runs
`python -m teddywatch run` with the tray (HOME and XDG dirs in a temp dir, one empty watched
folder), waits until the tray is up and the start-up catch-up is over, then samples
/proc/PID/stat (utime+stime, children's threads included: they are one process) and
/proc/PID/status (VmRSS) every second for --seconds.

    .venv/bin/python bench/idle_tray.py [--seconds 60] [--backend gtk|appindicator] [--stub]

--stub replaces the model with a fixed answer (for machines without models/bears.onnx); the
figures then leave out onnxruntime's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from gui_tools import start_desktop_session, wait_for  # noqa: E402
from teddywatch import resources  # noqa: E402

STUB_RUNNER = """
import sys
sys.path.insert(0, {tests!r})
import teddywatch.service
from test_tray import StubEngine
teddywatch.service.load_engine = lambda *a, **k: StubEngine()
from teddywatch.cli import main
sys.exit(main(["run", "--config", {config!r}]))
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--backend", default="", help="PYSTRAY_BACKEND (default: pystray's pick)")
    parser.add_argument("--stub", action="store_true", help="no model: a fixed answer")
    args = parser.parse_args()
    if not args.stub and not resources.default_model_path().exists():
        print(f"no model at {resources.default_model_path()}; build it (make model) "
              "or pass --stub", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="teddywatch-idle-") as temp:
        work = Path(temp)
        session = start_desktop_session(work)
        try:
            return measure(work, session, args)
        finally:
            session.close()


def measure(work: Path, session, args: argparse.Namespace) -> int:
    env = {**os.environ, **session.env, "HOME": str(work / "home"),
           "XDG_CONFIG_HOME": str(work / "config"), "XDG_DATA_HOME": str(work / "data")}
    if args.backend:
        env["PYSTRAY_BACKEND"] = args.backend
    (work / "inbox").mkdir()
    config = work / "config.toml"
    config.write_text(f'[[watch]]\npath = "{work / "inbox"}"\n', encoding="utf-8")
    command = [sys.executable, "-m", "teddywatch", "run", "--config", str(config)]
    if args.stub:
        command = [sys.executable, "-c", STUB_RUNNER.format(tests=str(REPO / "tests"),
                                                            config=str(config))]
    stderr = work / "stderr.txt"
    with open(stderr, "w") as err:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                   stderr=err)
    try:
        wait_for(lambda: "running in the tray" in stderr.read_text() or process.poll() is not None,
                 timeout=60, what="the tray")
        if process.poll() is not None:
            print(stderr.read_text(), file=sys.stderr)
            return 1
        time.sleep(5)  # let start-up work (catch-up scan, first menu build) settle
        cpu0, t0 = cpu_seconds(process.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1)
            rss.append(rss_mib(process.pid))
        cpu1, t1 = cpu_seconds(process.pid), time.monotonic()
        threads = len(os.listdir(f"/proc/{process.pid}/task"))
    finally:
        process.terminate()
        process.wait(30)
    backend = next((line.split("backend: ")[1].rstrip(")") for line in
                    stderr.read_text().splitlines() if "backend: " in line), "?")
    print(json.dumps({
        "seconds": round(t1 - t0, 1), "backend": backend, "model": "stub" if args.stub else
        str(resources.default_model_path().name),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 3),
        "cpu_seconds": round(cpu1 - cpu0, 3),
        "rss_mib_mean": round(sum(rss) / len(rss), 1), "rss_mib_max": round(max(rss), 1),
        "threads": threads, "exit_code": process.returncode,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
