"""Measure the frozen app: folder size by its biggest parts, and cold `classify` of one image.

    .venv/bin/python bench/bundle_bench.py                      # measures dist/teddywatch
    .venv/bin/python bench/bundle_bench.py --build              # builds it first (make bundle)
    .venv/bin/python bench/bundle_bench.py --torch-bundle /work/scratch/torch-dist/torch_classify

"Cold" means a new process each run (what a user or a script calling `teddywatch classify`
sees): interpreter start, imports, model load, one image. Each run is also measured with the page
cache dropped first where the machine allows it (root, writable /proc/sys/vm/drop_caches), which
adds reading the bundle from disk. Reports the median of --runs runs, peak RSS included, and writes
bench/results/bundle.json. No asserts: the targets (<= 100 MB, <= 1 s) are compared and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging"))
import bundle_check  # noqa: E402

MB = bundle_check.MB
TARGET_MB, TARGET_SECONDS = 100, 1.0


def drop_page_cache() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def _one_run(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run `command` once from a clean helper so ru_maxrss is this run's alone."""
    helper = (
        "import json, resource, subprocess, sys, time\n"
        "cmd = json.loads(sys.argv[1])\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(cmd, capture_output=True)\n"
        "s = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(json.dumps({'seconds': s, 'rss': rss, 'rc': p.returncode,\n"
        "                  'out': p.stdout.decode(), 'err': p.stderr.decode()[-2000:]}))\n")
    proc = subprocess.run([sys.executable, "-c", helper, json.dumps(command)],
                          capture_output=True, text=True, env=env, check=True)
    result = json.loads(proc.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result['rc']}): {result['err']}")
    return result


def measure(command: list[str], runs: int, env: dict[str, str], cold_cache: bool) -> dict:
    samples = []
    for _ in range(runs):
        dropped = drop_page_cache() if cold_cache else False
        result = _one_run(command, env)
        samples.append({"seconds": round(result["seconds"], 4), "peak_rss_mb":
                        round(result["rss"] / MB, 1), "page_cache_dropped": dropped})
    seconds = [s["seconds"] for s in samples]
    return {"median_seconds": round(statistics.median(seconds), 4),
            "min_seconds": min(seconds), "max_seconds": max(seconds),
            "median_peak_rss_mb": statistics.median(s["peak_rss_mb"] for s in samples),
            "page_cache_dropped": all(s["page_cache_dropped"] for s in samples),
            "runs": samples, "last_output": result["out"].strip()}


def build(distpath: Path, workpath: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean",
                    "--distpath", str(distpath), "--workpath", str(workpath),
                    str(REPO / "watch.spec")], cwd=REPO, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "dist" / "teddywatch")
    parser.add_argument("--build", action="store_true", help="build the bundle first")
    parser.add_argument("--image", type=Path, default=REPO / "tests" / "fixtures" / "teddy_1.jpg")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torch-bundle", type=Path,
                        help="a folder built from bench/torch_bundle.spec, for comparison")
    parser.add_argument("--torch-learner", type=Path,
                        help="with --torch-bundle: a learner .pkl to time its classify too")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bundle.json")
    args = parser.parse_args(argv)

    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform(),
                                "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}}
    if args.build:
        report["build_seconds"] = round(build(args.bundle.parent, REPO / "build"), 1)
    bundle = args.bundle
    if not (bundle / "teddywatch").is_file():
        raise SystemExit(f"{bundle}: no bundle; run `make bundle` or pass --build")

    meta = bundle / "_internal" / "models" / "bears.json"
    if meta.exists():
        report["model_sha256"] = json.loads(meta.read_text(encoding="utf-8")).get("sha256")
    total = bundle_check.folder_size(bundle)
    report["bundle"] = {
        "folder": str(bundle), "megabytes": round(total / MB, 1), "target_megabytes": TARGET_MB,
        "files": len(bundle_check.folder_files(bundle)),
        "parts_megabytes": {name: round(size / MB, 2)
                            for name, size in bundle_check.breakdown(bundle)[:15]},
        "problems": bundle_check.check(bundle),
    }
    print(bundle_check.report(bundle))

    with tempfile.TemporaryDirectory() as home:  # no user config or log in the way
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=f"{home}/c", XDG_DATA_HOME=f"{home}/d",
                   XDG_STATE_HOME=f"{home}/s", XDG_CACHE_HOME=f"{home}/k")
        env.pop("TEDDYWATCH_CONFIG", None)
        command = [str(bundle / "teddywatch"), "classify", "--format", "csv", str(args.image)]
        _one_run(command, env)  # one untimed run: the first ever start also fills caches
        report["classify_process_cold"] = measure(command, args.runs, env, cold_cache=False)
        report["classify_page_cache_cold"] = measure(command, args.runs, env, cold_cache=True)
        if args.torch_bundle:
            report["torch_bundle"] = {
                "folder": str(args.torch_bundle),
                "megabytes": round(bundle_check.folder_size(args.torch_bundle) / MB, 1),
                "parts_megabytes": {name: round(size / MB, 1) for name, size
                                    in bundle_check.breakdown(args.torch_bundle)[:10]}}
            if args.torch_learner:
                torch_command = [str(args.torch_bundle / args.torch_bundle.name),
                                 str(args.torch_learner), str(args.image)]
                report["torch_bundle"]["classify_process_cold"] = measure(
                    torch_command, args.runs, env, cold_cache=False)

    warm = report["classify_process_cold"]
    cold = report["classify_page_cache_cold"]
    print(f"classify one image, new process: median {warm['median_seconds']:.3f} s of "
          f"{args.runs} (peak RSS {warm['median_peak_rss_mb']:.0f} MB); page cache dropped: "
          + (f"median {cold['median_seconds']:.3f} s" if cold["page_cache_dropped"]
             else "not permitted here"))
    print(f"targets: bundle {report['bundle']['megabytes']:.1f} / {TARGET_MB} MB, classify "
          f"{warm['median_seconds']:.2f} / {TARGET_SECONDS:.0f} s")
    if "torch_bundle" in report:
        print(f"torch + fastai bundle: {report['torch_bundle']['megabytes']:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
