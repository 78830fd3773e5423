"""Numbers print as JavaScript prints them, which is what Segment users' templates were written against."""

from __future__ import annotations

import pytest

from consumer.events.numbers import js_number


@pytest.mark.parametrize(
    ("value", "javascript"),
    [
        (100.0, "100"),
        (1e16, "10000000000000000"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (123456789012345680000.0, "123456789012345680000"),
        (285.28, "285.28"),
        (0.1 + 0.2, "0.30000000000000004"),
        (0.000001, "0.000001"),
        (0.0000001, "1e-7"),
        (1.25e-7, "1.25e-7"),
        (-2.5, "-2.5"),
        (-0.0, "0"),
        (0.0, "0"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (12345, "12345"),
        (2**64, "18446744073709551616"),
    ],
)
def test_numbers_print_as_javascript_prints_them(value: float, javascript: str) -> None:
    assert js_number(value) == javascript
