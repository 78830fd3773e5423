"""The simulator's per-sender arrival rates: totals and the busiest window."""

from __future__ import annotations

import pytest

from consumer.simulator.rates import SenderRates, peak_in_window


@pytest.mark.parametrize(
    ("arrivals", "window_s", "peak"),
    [
        ([(0.0, 1), (1.0, 1), (2.0, 1)], 1.0, 1),  # [t, t + 1): the next arrival is outside
        ([(0.0, 1), (0.5, 1), (2.0, 1)], 1.0, 2),
        ([(0.0, 3), (0.1, 1), (5.0, 1)], 1.0, 4),  # segments, not messages
        ([(0.0, 1), (1.0, 1), (1.5, 1), (1.9, 1), (3.0, 1)], 1.0, 3),  # the busiest window is not the first
        ([(0.0, 1)], 10.0, 1),
    ],
)
def test_the_peak_is_the_most_segments_in_any_window(
    arrivals: list[tuple[float, int]], window_s: float, peak: int
) -> None:
    assert peak_in_window(arrivals, window_s) == peak


def test_each_sender_is_measured_on_its_own_whatever_the_arrival_order() -> None:
    rates = SenderRates()
    for at in (3.0, 0.0, 1.0, 2.0):
        rates.record("+14155550100", at, 1)
    rates.record("+14155550101", 0.5, 2)
    one = rates.of("+14155550100", 2.0)
    assert one is not None
    assert (one.messages, one.segments, one.first_at, one.last_at, one.peak_segments) == (4, 4, 0.0, 3.0, 2)
    assert one.peak_per_s == 1.0
    other = rates.of("+14155550101", 1.0)
    assert other is not None
    assert other.segments == 2
    assert rates.of("+14155550199", 1.0) is None


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_s"):
        SenderRates().of("x", 0)
