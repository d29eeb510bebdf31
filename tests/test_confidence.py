"""One rule for showing a confidence to a person (issue 12 item 4, issue 15 item 7): one decimal,
truncated so a figure the model did not reach is never shown, and every surface uses it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from teddywatch.results import format_confidence


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
