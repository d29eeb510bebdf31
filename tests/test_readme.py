"""The README keeps to what users need first, and its figures are the ones the bench scripts
recorded (bench/results/*.json), each said once."""

from __future__ import annotations

import json
import re

from conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
RESULTS = REPO / "bench" / "results"


def headings() -> list[str]:
    return re.findall(r"(?m)^## (.+)$", README)


def test_first_use_comes_before_the_benchmarks() -> None:
    order = headings()
    speed = order.index("Speed and memory")
    for first in ("Install and first use", "Where files are", "Stopping and uninstalling"):
        assert order.index(first) < min(speed, order.index("How it works")), first
    assert "| path | images/s |" not in README  # the tables live in bench/README.md
    assert "| path | images/s |" in (REPO / "bench" / "README.md").read_text(encoding="utf-8")


def test_one_figure_for_the_torch_bundle() -> None:
    assert set(re.findall(r"(\d+(?:\.\d+)?) GB", README)) == {"5.5"}
    assert "bench/bundle_bench.py --torch-bundle" in README


def test_bundle_and_idle_figures_match_the_recorded_results() -> None:
    bundle = json.loads((RESULTS / "bundle.json").read_text())
    assert f"**{bundle['bundle']['megabytes']:.0f} MB**" in README
    assert f"**{bundle['classify_process_cold']['median_seconds']:.2f} s**" in README
    tray = json.loads((RESULTS / "idle_tray.json").read_text())
    assert f"idles at {tray['rss_mib_max']:.0f} MB" in README
    latest = json.loads((RESULTS / "latest.json").read_text())
    assert "178.6" in json.dumps(latest) and "178.6 web images/s" in README
