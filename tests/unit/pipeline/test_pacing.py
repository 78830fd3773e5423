"""Send pacing: token buckets, per-sender limits, AIMD concurrency and the concurrency gate."""

from __future__ import annotations

import pytest

from consumer.errors import SettingsError
from consumer.pipeline.pacing import AdaptiveLimit, SenderLimits, TokenBucket


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- TokenBucket ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "burst", "costs", "waits"),
    [
        (1.0, 1.0, [1, 1, 1], [0.0, 1.0, 2.0]),
        (2.0, 2.0, [1, 1, 1, 1], [0.0, 0.0, 0.5, 1.0]),
        (10.0, 1.0, [1, 1, 1], [0.0, 0.1, 0.2]),
        # a message costing more than the burst waits for a full bucket, then leaves a debt behind it
        (1.0, 1.0, [3, 1], [0.0, 3.0]),
        (1.0, 2.0, [1, 3], [0.0, 1.0]),
        (3.0, 3.0, [2, 2, 2], [0.0, 1 / 3, 1.0]),
    ],
)
def test_reservations_made_at_once_queue_behind_each_other(
    clock: FakeClock, rate: float, burst: float, costs: list[float], waits: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, clock=clock)
    assert [bucket.reserve(c) for c in costs] == pytest.approx(waits)


def test_tokens_refill_with_time_up_to_the_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(2.0, 4.0, clock=clock)
    assert [bucket.reserve() for _ in range(4)] == [0.0] * 4
    clock.advance(1.0)
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.5])
    clock.advance(60.0)  # a long idle period saves at most `burst` tokens
    assert [bucket.reserve() for _ in range(5)] == pytest.approx([0.0, 0.0, 0.0, 0.0, 0.5])


def test_a_caller_that_waits_its_turn_then_finds_the_next_slot_free(clock: FakeClock) -> None:
    bucket = TokenBucket(1.0, 1.0, clock=clock)
    bucket.reserve()
    wait = bucket.reserve()
    clock.advance(wait)
    assert bucket.reserve() == pytest.approx(1.0)
    clock.advance(1.0)
    assert bucket.reserve() == pytest.approx(1.0)


def test_a_rate_of_zero_never_waits(clock: FakeClock) -> None:
    bucket = TokenBucket(0.0, 0.0, clock=clock)
    assert [bucket.reserve(100) for _ in range(1000)] == [0.0] * 1000


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1.0), (float("inf"), 1.0), (1.0, 0.0)])
def test_nonsense_bucket_parameters_are_rejected(clock: FakeClock, rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst, clock=clock)


# --- SenderLimits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "segments", "second_wait"),
    [
        ("long_code", 1, 1.0),
        ("long_code", 3, 3.0),  # 1 segment/s: a 3-segment message occupies the sender 3 s
        ("toll_free", 1, 0.0),  # burst of one second (3 segments)
        ("short_code", 2, 0.0),
        ("alphanumeric", 1, 1.0),
        ("whatsapp", 5, 0.0),  # WhatsApp counts messages, never segments
        ("messaging_service", 10, 0.0),  # unlimited by default
        ("messenger", 1, 0.0),
        ("unheard_of_kind", 1, 1.0),  # paced like a long code, the slowest
    ],
)
def test_default_rates_follow_the_sender_kind(
    clock: FakeClock, kind: str, segments: int, second_wait: float
) -> None:
    limits = SenderLimits(clock=clock)
    assert limits.reserve("sender", kind, segments) == 0.0
    assert limits.reserve("sender", kind, segments) == pytest.approx(second_wait)


def test_each_sender_has_its_own_bucket(clock: FakeClock) -> None:
    limits = SenderLimits(clock=clock)
    assert limits.reserve("+14155550100", "long_code", 1) == 0.0
    assert limits.reserve("+14155550101", "long_code", 1) == 0.0
    assert limits.reserve("+14155550100", "long_code", 1) == pytest.approx(1.0)


def test_a_per_sender_override_beats_the_kind_default(clock: FakeClock) -> None:
    limits = SenderLimits(overrides={"MG00000000000000000000000000000001": 2.0}, clock=clock)
    waits = [limits.reserve("MG00000000000000000000000000000001", "messaging_service", 1) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.5, 1.0])
    assert limits.rate_for("MG00000000000000000000000000000002", "messaging_service") == 0.0


def test_kind_defaults_can_be_changed(clock: FakeClock) -> None:
    limits = SenderLimits(defaults={"long_code": 4.0}, clock=clock)
    assert limits.rate_for("+14155550100", "long_code") == 4.0
    assert limits.rate_for("+14155550100", "toll_free") == 3.0


@pytest.mark.parametrize(
    ("unit", "kind", "segments", "cost"),
    [
        ("segments", "long_code", 4, 4.0),
        ("segments", "long_code", 0, 1.0),
        ("messages", "long_code", 4, 1.0),
        ("segments", "whatsapp", 4, 1.0),
        ("segments", "messaging_service", 2, 2.0),
    ],
)
def test_cost_counts_segments_only_for_sms_senders_in_segment_mode(
    unit: str, kind: str, segments: int, cost: float
) -> None:
    assert SenderLimits(unit=unit).cost(kind, segments) == cost


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"unit": "bytes"}, "unit 'bytes'"),
        ({"defaults": {"carrier_pigeon": 1.0}}, "unknown sender kinds"),
        ({"overrides": {"+14155550100": -1.0}}, "must be numbers >= 0"),
        ({"burst_s": 0.0}, "burst must be > 0"),
    ],
)
def test_bad_rate_limit_settings_raise_a_settings_error_naming_the_problem(
    kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(SettingsError, match=match):
        SenderLimits(**kwargs)  # type: ignore[arg-type]


# --- AdaptiveLimit ----------------------------------------------------------------------------


def test_a_throttle_cuts_the_limit_by_thirty_percent(clock: FakeClock) -> None:
    limit = AdaptiveLimit(100, 1, 200, clock=clock)
    assert limit.on_throttle() is True
    assert limit.limit == 70


def test_a_burst_of_throttles_within_the_cooldown_counts_once(clock: FakeClock) -> None:
    limit = AdaptiveLimit(100, 1, 200, cooldown_s=1.0, clock=clock)
    results = [limit.on_throttle() for _ in range(50)]
    assert results.count(True) == 1
    assert limit.limit == 70
    clock.advance(1.0)
    assert limit.on_throttle() is True
    assert limit.limit == 49


def test_the_limit_never_drops_below_the_minimum(clock: FakeClock) -> None:
    limit = AdaptiveLimit(10, 4, 10, cooldown_s=0.0, clock=clock)
    for _ in range(20):
        limit.on_throttle()
    assert limit.limit == 4


def test_successes_add_one_slot_per_limit_successes(clock: FakeClock) -> None:
    limit = AdaptiveLimit(10, 1, 100, clock=clock)
    for _ in range(9):
        limit.on_success()
    assert limit.limit == 10
    limit.on_success()
    assert limit.limit == 11
    for _ in range(11):
        limit.on_success()
    assert limit.limit == 12


def test_the_limit_recovers_after_a_throttle_but_not_above_the_maximum(clock: FakeClock) -> None:
    limit = AdaptiveLimit(20, 1, 20, clock=clock)
    limit.on_throttle()
    assert limit.limit == 14
    for _ in range(1000):
        limit.on_success()
    assert limit.limit == 20


@pytest.mark.parametrize(("initial", "minimum", "maximum"), [(0, 1, 10), (5, 6, 10), (11, 1, 10)])
def test_inconsistent_adaptive_bounds_are_rejected(initial: int, minimum: int, maximum: int) -> None:
    with pytest.raises(ValueError, match="minimum <= initial <= maximum"):
        AdaptiveLimit(initial, minimum, maximum)


# --- shares: the consumer group's rates split over its replicas --------------------------------


def test_a_share_scales_the_rate_and_the_burst_of_every_sender(clock: FakeClock) -> None:
    limits = SenderLimits(defaults={"long_code": 3.0}, clock=clock)
    limits.set_share(1 / 3)
    waits = [limits.reserve("+14155550100", "long_code", 1) for _ in range(3)]
    assert waits == pytest.approx([0.0, 1.0, 2.0]), "1 segment/s, a burst of one"


def test_a_lowered_share_makes_a_booked_send_wait_longer(clock: FakeClock) -> None:
    limits = SenderLimits(defaults={"long_code": 2.0}, clock=clock)
    tickets = [limits.book("+14155550100", "long_code", 1) for _ in range(5)]
    assert [t.wait for t in tickets] == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5])
    limits.set_share(0.5)  # another replica took half the partitions: 1/s from now on
    clock.advance(0.5)
    # Booked at 2/s the third was due now; at 1/s it is half a token short.
    assert limits.still_to_wait(tickets[2]) == pytest.approx(0.5)
    assert limits.still_to_wait(tickets[4]) == pytest.approx(2.5), "2.5 tokens behind, at 1/s"
    assert limits.still_to_wait(tickets[4]) == 0.0, "told once: the rate has not changed since"


def test_an_unchanged_rate_never_asks_a_waiter_to_wait_again(clock: FakeClock) -> None:
    limits = SenderLimits(clock=clock)
    limits.book("+14155550100", "long_code", 1)
    ticket = limits.book("+14155550100", "long_code", 1)
    clock.advance(ticket.wait)
    assert limits.still_to_wait(ticket) == 0.0


def test_a_raised_share_paces_later_sends_at_the_new_rate(clock: FakeClock) -> None:
    limits = SenderLimits(defaults={"long_code": 2.0}, clock=clock)
    limits.set_share(0.5)
    assert [limits.reserve("s", "long_code", 1) for _ in range(2)] == pytest.approx([0.0, 1.0])
    limits.set_share(1.0)
    assert limits.reserve("s", "long_code", 1) == pytest.approx(1.0), "behind 1 token of debt, at 2/s"


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        SenderLimits().set_share(share)


def test_an_unlimited_sender_stays_unlimited_whatever_the_share(clock: FakeClock) -> None:
    limits = SenderLimits(clock=clock)
    limits.set_share(0.1)
    assert [limits.reserve("MG1", "messaging_service", 1) for _ in range(50)] == [0.0] * 50


def test_a_bucket_that_was_unlimited_starts_full_at_its_new_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(0.0, 0.0, clock=clock)
    assert bucket.reserve() == 0.0
    bucket.set_rate(1.0, 1.0)
    assert [bucket.reserve(), bucket.reserve()] == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize(("maximum", "limit"), [(50, 50), (10, 10), (2, 2), (400, 400)])
def test_a_new_maximum_keeps_the_limit_in_its_place_between_minimum_and_maximum(
    maximum: int, limit: int
) -> None:
    adaptive = AdaptiveLimit(200, 4, 200)
    adaptive.set_maximum(100)
    assert adaptive.limit == 100
    adaptive.set_maximum(maximum)
    assert adaptive.limit == limit
    assert adaptive.minimum == min(4, maximum)
