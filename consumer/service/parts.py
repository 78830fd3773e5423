"""The service's collaborators, and how they are wired into one running replica.

`Parts` is what a replica is given: the Twilio client, the Kafka client factories, the decoder and
the clock (`Parts.real(settings)` builds the real ones; tests pass stubs from `tests/fakes.py`).
`Runtime` is what it builds from them once Kafka answers: one producer and consumer, the sent
state, and the stages of the data path, each receiving what it needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from consumer.events.decode import Decoder
from consumer.events.registry import make_registry_client
from consumer.kafka.clients import ConsumerLike, KafkaClients, ProducerLike, service_producer_config
from consumer.kafka.deadletter import DeadLetterWriter
from consumer.kafka.offsets import OffsetTracker
from consumer.mappings.match import MatchIndex
from consumer.mappings.model import Mapping
from consumer.metrics import Metrics
from consumer.pipeline.message import Params
from consumer.pipeline.pacing import AdaptiveLimit, SenderLimits
from consumer.pipeline.retry import RetryPolicy
from consumer.service.assignments import Assignments
from consumer.service.backpressure import Backpressure
from consumer.service.budgets import Budgets, in_flight_budget
from consumer.service.delivery import Delivery
from consumer.service.dispatcher import Dispatcher
from consumer.service.exchange import Exchange
from consumer.service.intake import EventDecoder, Intake
from consumer.service.outcomes import Outcomes
from consumer.service.records import RecordState
from consumer.settings import Settings
from consumer.state.changelog import Changelog
from consumer.state.sent import SentState
from consumer.state.store import LedgerStore
from consumer.state.suppression_topic import SuppressionList
from consumer.twilio.client import SendResult, TwilioClient


class Twilio(Protocol):
    """What the service asks of Twilio (consumer.twilio.client.TwilioClient, or a stub)."""

    async def send(self, params: Params) -> SendResult: ...
    async def list_messages(self, to: str, sender: str | None = None) -> list[dict[str, Any]]: ...
    async def check_credentials(self) -> dict[str, Any]: ...
    async def probe(self) -> bool: ...
    async def list_content(self) -> list[dict[str, Any]]: ...
    async def aclose(self) -> None: ...


@dataclass
class Parts:
    """Everything a replica talks to, given to it rather than built inside it."""

    client: Twilio
    kafka: KafkaClients
    decoder: EventDecoder
    clock: Callable[[], float] = time.time

    @classmethod
    def real(cls, settings: Settings) -> Parts:
        """The real parts: Twilio over HTTP, confluent-kafka clients, the decoder of the settings."""
        k, s = settings.kafka, settings.service
        password = k.schema_registry_password.get_secret_value() if k.schema_registry_password else ""
        registry = (
            make_registry_client(k.schema_registry_url, k.schema_registry_user, password)
            if k.schema_registry_url
            else None
        )
        return cls(
            client=TwilioClient(settings.twilio, max_connections=max(s.max_in_flight, 16)),
            kafka=KafkaClients.from_settings(k),
            decoder=Decoder(schemas_dir=s.schemas_dir, encoding=s.event_encoding, registry=registry),
        )


@dataclass
class Runtime:
    """One replica's running pieces, wired once the Kafka producer and the changelog are there."""

    producer: ProducerLike
    state: SentState
    outcomes: Outcomes
    delivery: Delivery
    dispatcher: Dispatcher
    intake: Intake
    assignments: Assignments
    backpressure: Backpressure
    consumer: ConsumerLike | None = None


def cap_horizon(mappings: tuple[Mapping, ...]) -> float:
    """The longest frequency-cap window: counts older than it can be forgotten."""
    caps = [m.policies.frequency_cap.per for m in mappings if m.policies.frequency_cap is not None]
    return max(caps, default=0.0)


def wire(
    settings: Settings,
    parts: Parts,
    *,
    producer: ProducerLike,
    changelog: Changelog,
    index: MatchIndex,
    mappings: tuple[Mapping, ...],
    metrics: Metrics,
    tracker: OffsetTracker,
    loop: asyncio.AbstractEventLoop,
    on_record_done: Callable[[RecordState], None],
    settle: Callable[[float], Any],
    commit: Callable[[Any, dict[tuple[str, int], int]], object],
    on_assigned: Callable[[], None],
    suppressions: SuppressionList | None = None,
) -> Runtime:
    """Build the data path's stages for one run and connect them."""
    s = settings.service
    if suppressions is not None:
        suppressions.follow(loop)  # loaded before consuming; from now on, changes as they come
    budget = in_flight_budget(s.max_in_flight, settings.twilio.account_concurrency)
    store = LedgerStore(s.state_dir / changelog.topic if s.state_dir else None)
    state = SentState(changelog, store, cap_horizon_s=cap_horizon(mappings),
                      on_progress=metrics.ledger_restore_remaining.set,
                      on_restored=lambda start, n: metrics.ledger_restored.labels(start).inc(n))  # fmt: skip
    outcomes = Outcomes(metrics, DeadLetterWriter(producer, settings.kafka.dead_letter_topic), on_record_done)
    exchange = Exchange(
        twilio=parts.client, metrics=metrics, state=state, outcomes=outcomes,
        adaptive=AdaptiveLimit(budget, minimum=min(4, budget)),
        policy=RetryPolicy.from_settings(s), reconcile_delay_s=s.reconcile_delay_s, clock=parts.clock,
        suppressed=suppressions,
    )  # fmt: skip
    limits = SenderLimits(overrides=s.sender_rates, unit=s.rate_unit)
    delivery = Delivery(exchange=exchange, metrics=metrics, state=state, outcomes=outcomes, limits=limits)
    budgets = Budgets(limits=limits, adaptive=exchange.adaptive, gate=exchange.gate, metrics=metrics,
                      in_flight=budget, topics=settings.kafka.topics, admin=parts.kafka.admin)  # fmt: skip
    dispatcher = Dispatcher(delivery.deliver, delivery.on_wire)
    intake = Intake(decoder=parts.decoder, index=index, outcomes=outcomes, dispatcher=dispatcher,
                    default_region=s.default_region, strict_numbers=s.phone_validation == "strict",
                    clock=parts.clock, metrics=metrics)  # fmt: skip
    assignments = Assignments(
        loop=loop, tracker=tracker, dispatcher=dispatcher, state=state, settle=settle,
        commit=commit, metrics=metrics, drain_grace_s=s.drain_grace_s, on_assigned=on_assigned,
        budgets=budgets,
    )  # fmt: skip
    return Runtime(
        producer, state, outcomes, delivery, dispatcher, intake, assignments, Backpressure(s.max_buffered)
    )


def producer_for(parts: Parts) -> ProducerLike:
    return parts.kafka.producer(service_producer_config())
