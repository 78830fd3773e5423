"""Quiet hours in the recipient's zone and frequency caps: pure decisions over a given time."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from consumer.pipeline.gates import FrequencyCaps, quiet_until
from consumer.zones import zone_or_default as zone

LA = zone("America/Los_Angeles")


@pytest.mark.parametrize(
    ("now_utc", "start", "end", "expected_end_utc"),
    [
        # 22:30 in Los Angeles (PST, UTC-8) is inside 21:00-09:00: held until 09:00 local next day.
        (
            datetime(2026, 11, 28, 6, 30, tzinfo=UTC),
            time(21),
            time(9),
            datetime(2026, 11, 28, 17, 0, tzinfo=UTC),
        ),
        # 03:00 local, after midnight: still inside, ends 09:00 the same local day.
        (
            datetime(2026, 11, 28, 11, 0, tzinfo=UTC),
            time(21),
            time(9),
            datetime(2026, 11, 28, 17, 0, tzinfo=UTC),
        ),
        # 12:00 local: outside.
        (datetime(2026, 11, 28, 20, 0, tzinfo=UTC), time(21), time(9), None),
        # A period that does not wrap midnight: 12:00-14:00, now 13:00 local.
        (
            datetime(2026, 11, 28, 21, 0, tzinfo=UTC),
            time(12),
            time(14),
            datetime(2026, 11, 28, 22, 0, tzinfo=UTC),
        ),
        # Exactly at the end is outside; exactly at the start is inside.
        (datetime(2026, 11, 28, 17, 0, tzinfo=UTC), time(21), time(9), None),
        (
            datetime(2026, 11, 29, 5, 0, tzinfo=UTC),
            time(21),
            time(9),
            datetime(2026, 11, 29, 17, 0, tzinfo=UTC),
        ),
        # start == end means no quiet hours at all.
        (datetime(2026, 11, 28, 6, 30, tzinfo=UTC), time(9), time(9), None),
    ],
)
def test_quiet_hours_are_read_in_the_recipients_time_zone(
    now_utc: datetime, start: time, end: time, expected_end_utc: datetime | None
) -> None:
    assert quiet_until(now_utc, LA, start, end) == expected_end_utc


def test_quiet_hours_end_respects_a_daylight_saving_change() -> None:
    # 2026-03-08 02:00 is the US spring-forward; 23:00 PST on the 7th ends at 09:00 PDT (UTC-7).
    now = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert quiet_until(now, LA, time(21), time(9)) == datetime(2026, 3, 8, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", [None, "", "Not/AZone", "../../etc/passwd"])
def test_an_unknown_time_zone_falls_back_to_the_default(name: str | None) -> None:
    assert zone(name, "Europe/Dublin").key == "Europe/Dublin"


def test_a_frequency_cap_allows_up_to_its_limit_within_the_window_then_again_after_it() -> None:
    caps = FrequencyCaps()
    assert caps.allows("k", 2, 60, now=0)
    caps.add("k", 0)
    caps.add("k", 10)
    assert not caps.allows("k", 2, 60, now=30)
    assert caps.allows("k", 2, 60, now=60.5)  # the first send left the window
    assert caps.allows("other", 2, 60, now=30)


def test_restored_sends_out_of_order_still_expire_in_time_order() -> None:
    caps = FrequencyCaps()
    for at in (50, 10, 30):
        caps.add("k", at)
    assert not caps.allows("k", 3, 100, now=100)
    assert caps.allows("k", 3, 100, now=110.5)  # 10 expired, 30 and 50 remain
    assert not caps.allows("k", 2, 100, now=110.5)


def test_pruning_forgets_recipients_whose_last_send_left_the_longest_window() -> None:
    caps = FrequencyCaps()
    caps.add("old", 0)
    caps.add("recent", 90)
    assert caps.prune(now=100, horizon_s=50) == 1
    assert len(caps) == 1
    assert not caps.allows("recent", 1, 50, now=100)
