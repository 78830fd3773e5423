"""Frequency caps: sliding-window counts of sends per recipient and scope, in the state store."""

from __future__ import annotations

from consumer.state.caps import FrequencyCaps
from consumer.state.store import LedgerStore
from tests.fakes import store


def test_a_frequency_cap_allows_up_to_its_limit_within_the_window_then_again_after_it() -> None:
    caps = FrequencyCaps(store(), horizon_s=60)
    assert caps.allows("k", 2, 60, now=0)
    caps.add("k", 0)
    caps.add("k", 10)
    assert not caps.allows("k", 2, 60, now=30)
    assert caps.allows("k", 2, 60, now=60.5)  # the first send left the window
    assert caps.allows("other", 2, 60, now=30)
    assert not caps.allows("other", 0, 60, now=30), "a limit of 0 allows nothing"


def test_restored_sends_out_of_order_still_expire_in_time_order() -> None:
    caps = FrequencyCaps(store(), horizon_s=100)
    for at in (50, 10, 30):
        caps.add("k", at)
    assert not caps.allows("k", 3, 100, now=100)
    assert caps.allows("k", 3, 100, now=110.5)  # 10 expired, 30 and 50 remain
    assert not caps.allows("k", 2, 100, now=110.5)


def test_the_same_send_counted_twice_by_a_restore_counts_once() -> None:
    caps = FrequencyCaps(store(), horizon_s=100)
    caps.add("k", 50.25)
    caps.add("k", 50.25)
    assert caps.allows("k", 2, 100, now=60)


def test_counts_past_the_longest_window_are_removed_from_disk(tmp_path: object) -> None:
    s = store()
    caps = FrequencyCaps(s, horizon_s=50)
    caps.add("old", 0)
    caps.add("recent", 90)
    s.expire(now=100)
    assert caps.allows("old", 1, 10_000, now=100), "forgotten: the count left its horizon"
    assert not caps.allows("recent", 1, 50, now=100)


def test_counts_survive_reopening_the_store(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "state"
    first = LedgerStore(path)
    FrequencyCaps(first, horizon_s=3600).add("k", 100)
    first.close()
    again = LedgerStore(path)
    try:
        assert not FrequencyCaps(again, horizon_s=3600).allows("k", 1, 3600, now=200)
    finally:
        again.close()
