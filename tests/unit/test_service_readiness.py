"""/readyz tells the truth: before start-up finished, and after the brokers come back."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError as RdKafkaError

from consumer.service.service import Service
from consumer.settings import load_settings


class ReachableConsumer:
    """A consumer whose broker answers again (the outage is over)."""

    def __init__(self) -> None:
        self.probes = 0

    def list_topics(self, *_args: Any, **_kwargs: Any) -> object:
        self.probes += 1
        return object()

    def get_watermark_offsets(self, *_args: Any, **_kwargs: Any) -> tuple[int, int]:
        return (0, 0)


def test_readiness_asked_during_start_up_answers_not_ready_instead_of_failing() -> None:
    service = Service(load_settings(environ={}), handle_signals=False)
    service._credentials_ok = True  # checked; the ledger topic and the dispatcher are still being set up
    ready, checks = service.readiness()
    assert not ready
    assert checks["partitions_assigned"] is False


def test_readiness_recovers_when_the_brokers_answer_again_without_a_rebalance() -> None:
    service = Service(load_settings(environ={}), handle_signals=False)
    service._on_kafka_error(RdKafkaError(RdKafkaError._ALL_BROKERS_DOWN))
    assert service._broker_ok is False
    consumer = ReachableConsumer()
    service.consumer = consumer  # type: ignore[assignment]
    service._update_lag()  # the periodic check on the poll thread
    assert consumer.probes == 1
    assert service._broker_ok is True
