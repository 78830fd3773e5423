"""OffsetTracker: only contiguous finished offsets become committable (invariant 2)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.kafka.offsets import OffsetTracker

TP = ("events", 0)
OTHER = ("events", 1)


def tracker_with(offsets: list[int], tp: tuple[str, int] = TP) -> OffsetTracker:
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.track(tp, offset)
    return tracker


@pytest.mark.parametrize(
    ("tracked", "finished", "expected"),
    [
        ([0, 1, 2], [], {}),
        ([0, 1, 2], [0], {TP: 1}),
        ([0, 1, 2], [1, 2], {}),
        ([0, 1, 2], [2, 1, 0], {TP: 3}),
        ([0, 1, 2, 3], [0, 2, 3], {TP: 1}),
        ([10, 11, 12], [10, 11], {TP: 12}),
        # gaps left by compaction or transaction markers do not hold the partition back
        ([5, 7, 9], [5, 7], {TP: 8}),
        ([5, 7, 9], [9, 5, 7], {TP: 10}),
        ([5, 7, 9], [7, 9], {}),
    ],
)
def test_committable_is_the_highest_contiguous_finished_tracked_offset_plus_one(
    tracked: list[int], finished: list[int], expected: dict[tuple[str, int], int]
) -> None:
    tracker = tracker_with(tracked)
    for offset in finished:
        tracker.finish(TP, offset)
    assert tracker.committable() == expected


def test_committable_only_lists_partitions_that_advanced_since_the_last_commit() -> None:
    tracker = tracker_with([0, 1])
    tracker.track(OTHER, 0)
    tracker.finish(TP, 0)
    tracker.finish(OTHER, 0)
    assert tracker.committable() == {TP: 1, OTHER: 1}
    tracker.mark_committed({TP: 1, OTHER: 1})
    assert tracker.committable() == {}
    tracker.finish(TP, 1)
    assert tracker.committable() == {TP: 2}


def test_an_older_commit_acknowledged_late_does_not_move_the_mark_backwards() -> None:
    tracker = tracker_with([0, 1, 2])
    for offset in (0, 1, 2):
        tracker.finish(TP, offset)
    tracker.mark_committed({TP: 3})
    tracker.mark_committed({TP: 1})
    assert tracker.committable() == {}


def test_pending_counts_tracked_but_unfinished_records_per_partition_and_in_total() -> None:
    tracker = tracker_with([0, 1, 2])
    tracker.track(OTHER, 4)
    tracker.finish(TP, 1)
    assert tracker.pending(TP) == 2
    assert tracker.pending(OTHER) == 1
    assert tracker.pending() == 3
    assert tracker.pending(("unknown", 0)) == 0


def test_revoke_forgets_the_partition_and_its_pending_records() -> None:
    tracker = tracker_with([0, 1])
    tracker.track(OTHER, 0)
    tracker.finish(TP, 0)
    tracker.revoke(TP)
    assert tracker.pending() == 1
    assert tracker.committable() == {}
    assert tracker.partitions() == [OTHER]


def test_a_late_finish_for_a_revoked_partition_is_ignored() -> None:
    tracker = tracker_with([0, 1])
    tracker.revoke(TP)
    tracker.finish(TP, 1)
    assert tracker.committable() == {}
    assert tracker.pending() == 0


def test_a_partition_consumed_again_after_revoke_starts_fresh() -> None:
    tracker = tracker_with([5, 6])
    tracker.finish(TP, 5)
    tracker.mark_committed({TP: 6})
    tracker.revoke(TP)
    tracker.track(TP, 6)
    tracker.finish(TP, 6)
    assert tracker.committable() == {TP: 7}


def test_offsets_that_do_not_increase_are_rejected_naming_the_partition() -> None:
    tracker = tracker_with([3])
    with pytest.raises(ValueError, match=r"offset 3 of events\[0\] tracked after 3"):
        tracker.track(TP, 3)


@pytest.mark.parametrize(
    ("tracked", "finish"),
    [([0, 1], [2]), ([0, 1], [1, 1]), ([0, 1], [0, 0])],
    ids=["untracked", "twice-before-head", "twice-at-head"],
)
def test_finishing_an_untracked_offset_or_finishing_twice_is_an_error(
    tracked: list[int], finish: list[int]
) -> None:
    tracker = tracker_with(tracked)
    *first, last = finish
    for offset in first:
        tracker.finish(TP, offset)
    with pytest.raises(ValueError, match=f"offset {last} of events"):
        tracker.finish(TP, last)


@given(
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60),
    st.randoms(use_true_random=False),
    st.integers(min_value=0, max_value=60),
)
def test_committable_matches_a_simple_model_whatever_the_finish_order(
    steps: list[int], rng: random.Random, n_finished: int
) -> None:
    offsets = []
    offset = 0
    for step in steps:
        offset += step
        offsets.append(offset)
    finished = offsets.copy()
    rng.shuffle(finished)
    finished = finished[:n_finished]
    tracker = tracker_with(offsets)
    for o in finished:
        tracker.finish(TP, o)
    done = set(finished)
    model = None
    for o in offsets:
        if o not in done:
            break
        model = o + 1
    assert tracker.committable() == ({} if model is None else {TP: model})
    assert tracker.pending() == len(offsets) - len(done)


def test_a_large_backlog_finished_out_of_order_commits_exactly_to_its_end() -> None:
    # Finishing in reverse within windows of 1,000; its speed is bench/bench_offsets.py's to measure.
    tracker = OffsetTracker()
    n, window = 20_000, 1_000
    for base in range(0, n, window):
        for offset in range(base, base + window):
            tracker.track(TP, offset)
        for offset in range(base + window - 1, base, -1):
            tracker.finish(TP, offset)
        assert tracker.committable() == ({TP: base} if base else {}), "the window's first is still open"
        tracker.finish(TP, base)
        assert tracker.committable() == {TP: base + window}
    assert tracker.pending() == 0


def test_the_last_committed_offset_is_known_per_partition_until_revoked() -> None:
    tracker = OffsetTracker()
    tp = ("t", 0)
    assert tracker.committed(tp) is None
    tracker.track(tp, 0)
    tracker.finish(tp, 0)
    tracker.mark_committed(tracker.committable())
    assert tracker.committed(tp) == 1
    tracker.revoke(tp)
    assert tracker.committed(tp) is None
