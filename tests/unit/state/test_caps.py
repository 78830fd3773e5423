"""Frequency caps: sliding-window counts of sends per recipient and scope."""

from __future__ import annotations

from consumer.state.caps import FrequencyCaps


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
