"""One rule for showing a confidence to a person (issue 12 item 4, issue 15 item 7): one decimal,
truncated so a figure the model did not reach is never shown, and every surface uses it."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re

import numpy as np
import pytest

from teddywatch.cli import OUTPUT_FORMATS
from teddywatch.gallery import render
from teddywatch.results import Result, format_confidence
from teddywatch.sinks.notify import Message, single_message
from teddywatch.tray import last_text, result_text


@pytest.mark.parametrize(("p", "shown"), [
    (0.997, "99.7%"),       # {:.0%} said "100%"
    (0.9996, "99.9%"),      # {:.1%} said "100.0%"
    (0.99999999, "99.9%"),
    (math.nextafter(1.0, 0.0), "99.9%"),
    (1.0, "100.0%"),        # the only way to 100.0%
    (0.5, "50.0%"),
    (0.0, "0.0%"),
    (0.0009, "0.0%"),
    (0.001, "0.1%"),
    (0.9731, "97.3%"),
    (0.97, "97.0%"),
    # Values whose binary float sits just under the decimal: floored on the digits, not the bits.
    (0.29, "29.0%"),
    (0.57, "57.0%"),
    (0.07, "7.0%"),
])
def test_one_decimal_truncated_never_rounded_up(p: float, shown: str) -> None:
    assert format_confidence(p) == shown


def test_only_exactly_one_is_shown_as_a_hundred_percent() -> None:
    below = [1 - 10.0 ** -k for k in range(1, 16)] + [math.nextafter(1.0, 0.0)]
    assert [format_confidence(p) for p in below if format_confidence(p) == "100.0%"] == []
    assert format_confidence(1) == "100.0%"


def test_never_more_than_the_value_and_less_by_under_a_tenth() -> None:
    for p in np.random.default_rng(12).random(2000).tolist():
        shown = float(format_confidence(p).rstrip("%")) / 100
        assert shown <= p < shown + 0.001 + 1e-12, p


def test_engine_float32_values_are_truncated_as_they_are() -> None:
    # Engines hand over float32 probabilities; float32(0.997) is 0.99699997..., under 99.7%.
    assert format_confidence(np.float32(0.997)) == "99.6%"
    assert format_confidence(np.float32(1.0)) == "100.0%"
    assert format_confidence(np.float64(0.997)) == "99.7%"


@pytest.mark.parametrize(("p", "shown"), [
    (float("nan"), "?%"),
    (float("inf"), "?%"),
    (float("-inf"), "?%"),
    (-0.0, "0.0%"),
    (-0.25, "0.0%"),       # not a probability: clamped, never "-25.0%"
    (-1e-12, "0.0%"),
    (1 + 1e-12, "100.0%"),
    (3.0, "100.0%"),
])
def test_not_a_probability_is_shown_honestly_without_crashing(p: float, shown: str) -> None:
    assert format_confidence(p) == shown


# --- every surface prints the same string for the same Result ---------------------------------

def result_at(confidence: float, status: str = "ok", **extra) -> Result:
    return Result(path="/home/me/Pictures/teddywatch/IMG_0042.jpg", label="teddy",
                  confidence=confidence, status=status, model="bears-int8.onnx@05436178",
                  **extra)


def classify_output(result: Result, fmt: str = "table", top: int = 1) -> str:
    """What `teddywatch classify --format FMT --top K` prints for `result`."""
    out = io.StringIO()
    OUTPUT_FORMATS[fmt](out, top)(result)
    return out.getvalue()


def test_classify_table_shows_the_shared_figure() -> None:
    line = classify_output(result_at(0.997))
    assert line.split()[:3] == ["teddy", "99.7%", "ok"] and "100" not in line
    assert classify_output(result_at(0.9996)).split()[1] == "99.9%"  # {:6.1%} said 100.0%
    assert classify_output(result_at(1.0)).split()[:2] == ["teddy", "100.0%"]
    assert classify_output(result_at(0.5, "unsure")).split()[:3] == ["teddy", "50.0%", "unsure"]


def test_classify_table_top_k_uses_the_same_rule() -> None:
    result = result_at(0.9996, top=(("teddy", 0.9996), ("black", 0.0004)))
    assert "[teddy:99.9% black:0.0%]" in classify_output(result, top=2)


def test_classify_csv_and_json_keep_their_full_numbers() -> None:
    result = result_at(0.9996, top=(("teddy", 0.9996), ("black", 0.0004)))
    rows = list(csv.reader(io.StringIO(classify_output(result, "csv", top=2))))
    assert rows[1][2] == "0.9996" and rows[1][-1] == "teddy:1.000 black:0.000"
    record = json.loads(classify_output(result, "json", top=2))
    assert record["confidence"] == 0.9996 and record["top"][0]["confidence"] == 0.9996


def test_notification_shows_the_shared_figure() -> None:
    photo = "/home/me/Pictures/teddywatch/IMG_0042.jpg"
    assert single_message(result_at(0.997)) == Message("Teddy bear, 99.7%", "IMG_0042.jpg",
                                                       image=photo, opens=photo)
    assert single_message(result_at(0.9996, "unsure")).title == "Teddy bear? 99.9% (unsure)"
    assert single_message(result_at(float("nan"))).title == "Teddy bear, ?%"


def test_tray_labels_show_the_shared_figure() -> None:
    newest, older = result_at(0.997), result_at(0.9996, "unsure")
    assert result_text(newest) == "teddy 99.7% - IMG_0042.jpg"
    assert result_text(older) == "teddy? 99.9% - IMG_0042.jpg"
    assert last_text([newest, older]) == "Last: teddy 99.7% - IMG_0042.jpg"


def gallery_figures(results: list[Result]) -> list[str]:
    """The confidences on the gallery page the service writes for `results`."""
    return re.findall(r'<span class="confidence">([^<]*)</span>', render(results, {}))


def test_gallery_shows_the_shared_figure() -> None:
    assert gallery_figures([result_at(0.997)]) == ["99.7%"]  # {:.0%} said "100%"
    assert gallery_figures([result_at(1.0), result_at(0.5, "unsure")]) == ["100.0%", "50.0%"]
    assert gallery_figures([Result.failed("/p/broken.jpg", "not an image")]) == []


@pytest.mark.parametrize("confidence", [0.997, 0.9996, 1.0, 0.5, 0.29, 0.0, float("nan")])
def test_every_surface_shows_the_same_string_for_the_same_result(confidence: float) -> None:
    result = result_at(confidence)
    shown = format_confidence(confidence)
    assert classify_output(result).split()[1] == shown
    assert single_message(result).title == f"Teddy bear, {shown}"
    assert result_text(result) == f"teddy {shown} - IMG_0042.jpg"
    assert last_text([result]) == f"Last: teddy {shown} - IMG_0042.jpg"
    assert gallery_figures([result]) == [shown]


def test_the_service_log_line_shows_the_shared_figure(caplog, tmp_path) -> None:
    from teddywatch.config import Config, LogConfig, WatchConfig
    from teddywatch.service import Service

    caplog.set_level(logging.INFO, logger="teddywatch.service")
    config = Config(watch=(WatchConfig(path=tmp_path),), log=LogConfig(path=tmp_path / "r.csv"))
    service = Service(config, engine=object())  # never started: only its on_result hook runs
    service._on_result(result_at(0.997))  # what the worker calls after the sinks
    assert caplog.messages == ["teddy 99.7% /home/me/Pictures/teddywatch/IMG_0042.jpg"]
