"""Budgets split by partition share: sender rates and the in-flight ceiling scaled by k/n."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaException

from consumer.metrics import Metrics
from consumer.pipeline.pacing import AdaptiveLimit, SenderLimits
from consumer.service.budgets import Budgets, count_partitions, in_flight_budget
from consumer.service.concurrency import ConcurrencyGate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def budgets(
    in_flight: int = 64, admin: Callable[[], Any] = lambda: _Admin({"a": 6, "b": 6})
) -> tuple[Budgets, SenderLimits, AdaptiveLimit, ConcurrencyGate, Clock]:
    clock = Clock()
    limits = SenderLimits(defaults={"long_code": 6.0}, clock=clock)
    adaptive = AdaptiveLimit(in_flight, minimum=min(4, in_flight))
    gate = ConcurrencyGate(adaptive.limit)
    b = Budgets(limits=limits, adaptive=adaptive, gate=gate, metrics=Metrics(), in_flight=in_flight,
                topics=["a", "b"], admin=admin)  # fmt: skip
    return b, limits, adaptive, gate, clock


@pytest.mark.parametrize(
    ("owned", "total", "rate", "ceiling"),
    [(12, 12, 6.0, 64), (4, 12, 2.0, 21), (1, 12, 0.5, 5), (1, 64, 6 / 64, 1)],
)
def test_a_replica_owning_k_of_n_partitions_gets_k_over_n_of_each_budget(
    owned: int, total: int, rate: float, ceiling: int
) -> None:
    b, limits, adaptive, gate, _ = budgets()
    b.apply(owned, total)
    for _ in range(max(1, int(rate))):  # the burst (a second of sending) goes at once
        assert limits.book("+14155550100", "long_code", 1).wait == 0.0
    waits = [limits.book("+14155550100", "long_code", 1).wait for _ in range(3)]
    assert waits == pytest.approx([1 / rate, 2 / rate, 3 / rate])
    assert adaptive.maximum == ceiling
    assert gate.limit == adaptive.limit <= ceiling


def test_the_shares_of_every_replica_never_add_up_to_more_than_the_budget() -> None:
    parts = [budgets(in_flight=10) for _ in range(3)]
    for (b, *_), owned in zip(parts, (5, 4, 3), strict=True):
        b.apply(owned, 12)
    assert sum(adaptive.maximum for _, _, adaptive, _, _ in parts) <= 10


def test_owning_nothing_keeps_the_last_share_and_a_later_apply_without_a_count_uses_the_last() -> None:
    b, limits, _, _, _ = budgets()
    b.apply(3, 12)
    b.apply(0)
    assert limits.share == 0.25
    b.apply(6)
    assert limits.share == 0.5


def test_the_account_concurrency_bounds_the_in_flight_budget_when_set() -> None:
    assert in_flight_budget(256, 0) == 256
    assert in_flight_budget(256, 100) == 100
    assert in_flight_budget(50, 100) == 50


class _Admin:
    def __init__(self, topics: dict[str, int], fail: bool = False) -> None:
        self.topics, self.fail = topics, fail

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        if self.fail:
            raise KafkaException("broker down")
        described = {
            name: type("T", (), {"partitions": dict.fromkeys(range(n)), "error": None})()
            for name, n in self.topics.items()
        }
        return type("M", (), {"topics": described})()


def test_the_partitions_of_every_source_topic_are_counted_or_none_when_kafka_cannot_say() -> None:
    assert count_partitions(_Admin({"a": 6, "b": 3, "other": 50}), ["a", "b"]) == 9
    assert count_partitions(_Admin({"a": 6}), ["a", "b"]) is None
    assert count_partitions(_Admin({"a": 6}, fail=True), ["a"]) is None


def test_the_count_is_asked_of_one_admin_client_made_on_first_use() -> None:
    made: list[_Admin] = []

    def admin() -> _Admin:
        made.append(_Admin({"a": 4, "b": 8}))
        return made[-1]

    b, *_ = budgets(admin=admin)
    assert (b.count(), b.count()) == (12, 12)
    assert len(made) == 1
