"""The send path that ships (delivery, the retry policy, lanes, dead letters) over real HTTP to the
simulator on loopback, with dead letters written to the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from consumer.events.recipients import Channel
from consumer.kafka.clients import KafkaClients
from consumer.kafka.deadletter import DeadLetterWriter
from consumer.metrics import Metrics
from consumer.pipeline.message import OutboundMessage
from consumer.pipeline.pacing import AdaptiveLimit, SenderLimits
from consumer.pipeline.retry import RetryPolicy
from consumer.service.delivery import Delivery
from consumer.service.dispatcher import Dispatcher
from consumer.service.exchange import Exchange
from consumer.service.outcomes import Outcomes
from consumer.service.records import RecordState
from consumer.settings import TwilioSettings
from consumer.simulator import SimulatorConfig, SimulatorHandle, running_simulator
from consumer.state.changelog import Changelog
from consumer.state.sent import SentState
from consumer.twilio.client import TwilioClient
from tests.fakes import store

pytestmark = pytest.mark.integration
SENDER = "+14155550199"


def sms(n: int = 0, to: str | None = None) -> OutboundMessage:
    to = to or f"+1415555{n:04d}"
    return OutboundMessage(
        mapping_id="m1", channel=Channel.SMS, to=to, recipient=to, sender=SENDER, sender_kind="long_code",
        params=(("To", to), ("From", SENDER), ("Body", f"message {n}")), segments=1, dedup_key="",
        dedup_window_s=0, timezone=None, quiet_hours=None, frequency_cap=None,
    )  # fmt: skip


class SendPath:
    """Delivery with a real TwilioClient and a real Kafka producer for its dead letters."""

    def __init__(
        self, client: TwilioClient, producer: Producer, changelog: Changelog, dlq: str, policy: RetryPolicy
    ) -> None:
        self.metrics = Metrics()
        self.producer = producer
        self.done: list[RecordState] = []
        self.sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            await asyncio.sleep(seconds)

        outcomes = Outcomes(self.metrics, DeadLetterWriter(producer, dlq), self.done.append)
        self.state = SentState(changelog, store())
        self.exchange = Exchange(
            twilio=client, metrics=self.metrics, state=self.state, outcomes=outcomes,
            adaptive=AdaptiveLimit(64, minimum=1), policy=policy, reconcile_delay_s=0.2, sleep=sleep,
        )  # fmt: skip
        # No per-sender pacing here: these tests are about failures, not rates.
        self.delivery = Delivery(
            exchange=self.exchange, metrics=self.metrics, state=self.state, outcomes=outcomes,
            limits=SenderLimits(defaults={"long_code": 0}), sleep=sleep,
        )  # fmt: skip
        self.dispatcher = Dispatcher(self.delivery.deliver, self.delivery.on_wire)

    async def send(self, *messages: OutboundMessage, timeout_s: float = 60) -> list[RecordState]:
        records = []
        for offset, message in enumerate(messages):
            record = RecordState("events", 0, offset, b"k", b"v", None)
            record.expect(1)
            self.dispatcher.submit(record, message)
            records.append(record)

        async def finished() -> None:
            while len(self.done) < len(records):
                self.producer.poll(0)
                await asyncio.sleep(0.01)

        await asyncio.wait_for(finished(), timeout_s)
        return records

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def sim() -> Any:
    with running_simulator(SimulatorConfig(seed=11)) as handle:
        yield handle


@pytest.fixture
async def path(
    sim: SimulatorHandle, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> AsyncIterator[Callable[..., SendPath]]:
    sim.configure(**{k: v for k, v in vars(SimulatorConfig(seed=11)).items() if k != "templates"})
    sim.reset()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    dlq, ledger = new_topic(), new_topic()
    clients: list[TwilioClient] = []

    def make(base_url: str | None = None, timeout_s: float = 5.0, **policy: Any) -> SendPath:
        settings = TwilioSettings(
            account_sid=sim.account_sid, api_key_sid=sim.api_key_sid, api_key_secret=sim.api_key_secret,
            base_url=base_url or sim.base_url, timeout_s=timeout_s,
        )  # fmt: skip
        clients.append(TwilioClient(settings, max_connections=32))
        retry = RetryPolicy(**{"max_retries": 3, "base_s": 0.01, "cap_s": 0.05, **policy})
        changelog = Changelog(KafkaClients({"bootstrap.servers": kafka_bootstrap}), producer, ledger, 1)
        return SendPath(clients[-1], producer, changelog, dlq, retry)

    yield make
    for client in clients:
        await client.aclose()
    producer.flush(10)


async def test_a_429_storm_is_retried_honouring_retry_after_until_it_ends(
    path: Callable[..., SendPath], sim: SimulatorHandle
) -> None:
    sim.configure(error_rates={20429: 1.0}, retry_after_s=0.05)
    p = path(max_retries=50)
    task = asyncio.create_task(p.send(sms()))
    while sim.stats()["answers"].get("429/20429", 0) < 2:  # noqa: ASYNC110  the simulator's own count
        await asyncio.sleep(0.01)
    sim.configure(error_rates={})  # the storm ends
    [record] = await task
    assert record.outcomes == [("m1", "sent", "queued")]
    throttled = sim.stats()["answers"]["429/20429"]
    assert p.sample("kafka_twilio_retries_total", reason="twilio_20429") == throttled
    assert all(wait >= 0.05 for wait in p.sleeps), "Retry-After is the floor of every wait"
    assert len(sim.messages()) == 1


async def test_the_account_concurrency_limit_answers_429_and_retries_get_everything_through(
    path: Callable[..., SendPath], sim: SimulatorHandle
) -> None:
    sim.configure(max_concurrency=4, latency_ms=30, retry_after_s=0.01)
    p = path(max_retries=50)
    records = await p.send(*(sms(n) for n in range(20)))
    assert all(r.outcomes[0][1] == "sent" for r in records)
    assert len(sim.messages()) == 20
    retries = p.sample("kafka_twilio_retries_total", reason="twilio_20429")
    assert retries == sim.stats()["answers"]["429/20429"] > 0
    assert p.sample("kafka_twilio_concurrency_limit") < 64, "429s lowered the adaptive limit"


async def test_a_twilio_5xx_is_settled_with_twilio_s_list_and_sent_once(
    path: Callable[..., SendPath], sim: SimulatorHandle
) -> None:
    sim.configure(error_rates={500: 1.0})
    p = path()
    task = asyncio.create_task(p.send(sms()))
    while not sim.stats()["answers"].get("500/20500"):  # noqa: ASYNC110  the simulator's own count
        await asyncio.sleep(0.01)
    sim.configure(error_rates={})
    [record] = await task
    assert record.outcomes == [("m1", "sent", "queued")]
    assert p.sample("kafka_twilio_ambiguous_sends_total") >= 1
    assert p.sample("kafka_twilio_reconciled_total", result="not_found") >= 1
    assert len(sim.messages()) == 1


@pytest.mark.parametrize(
    "failure",
    [
        {"timeout_rate": 1.0, "hang_s": 1.0},  # accepted, then no answer before the client gives up
        {"drop_after_accept_rate": 1.0},  # accepted, then the connection drops before the answer
        {"truncate_rate": 1.0},  # accepted, then half an answer and a closed connection
    ],
    ids=["read timeout", "dropped after accepting", "truncated answer"],
)
async def test_an_unanswered_send_that_reached_twilio_ends_sent_by_reconciliation_never_twice(
    path: Callable[..., SendPath], sim: SimulatorHandle, failure: dict[str, Any]
) -> None:
    sim.configure(**failure)
    p = path(timeout_s=0.3)
    [record] = await p.send(sms())
    assert record.outcomes[0][:2] == ("m1", "sent")
    sim.configure(timeout_rate=0, drop_after_accept_rate=0, truncate_rate=0)
    await asyncio.sleep(1.2)  # anything still held by the simulator lands
    assert len(sim.messages()) == 1, "Twilio had it: it was found, not sent again"
    assert p.sample("kafka_twilio_reconciled_total", result="found") == 1
    assert p.sample("kafka_twilio_dead_letters_total", stage="send", reason="ambiguous") == 0


async def test_an_unanswered_send_that_never_reached_twilio_is_sent_once(
    path: Callable[..., SendPath], sim: SimulatorHandle
) -> None:
    sim.configure(disconnect_rate=1.0)  # the connection drops before the simulator stores anything
    p = path()
    task = asyncio.create_task(p.send(sms()))
    while not sim.stats()["answers"].get("500"):  # noqa: ASYNC110  the simulator's own count
        await asyncio.sleep(0.01)
    sim.configure(disconnect_rate=0)
    [record] = await task
    assert record.outcomes == [("m1", "sent", "queued")]
    assert len(sim.messages()) == 1
    assert p.sample("kafka_twilio_reconciled_total", result="not_found") >= 1


async def test_a_twilio_outage_is_waited_out_and_sending_resumes_when_it_answers(
    path: Callable[..., SendPath], sim: SimulatorHandle
) -> None:
    p = path(max_retries=2)
    sim.outage("503")
    task = asyncio.create_task(p.send(*(sms(n) for n in range(20))))
    while not p.exchange.breaker.open:  # noqa: ASYNC110  the breaker's own state
        await asyncio.sleep(0.01)
    sim.outage("refuse", 1.0)  # then connections are refused for a second
    await asyncio.sleep(1.5)
    assert not task.done(), "nothing was dead-lettered while Twilio was down"
    sim.outage("")
    p.exchange.breaker.success()  # what the probe does at Twilio's first answer (tested with the service)
    records = await task
    assert all(r.outcomes[0][:2] == ("m1", "sent") for r in records)
    assert len({m["Body"] for m in sim.messages()}) == len(sim.messages()) == 20


async def test_a_refused_connection_is_retried_to_the_budget_then_dead_lettered(
    path: Callable[..., SendPath],
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = path(base_url=f"http://127.0.0.1:{port}")
    [record] = await p.send(sms())
    assert record.outcomes == [("m1", "dead_lettered", "retries_exhausted")]
    assert p.sample("kafka_twilio_retries_total", reason="connection") == 3


async def test_a_recipient_who_replied_stop_is_dead_lettered_once_and_then_suppressed(
    path: Callable[..., SendPath], sim: SimulatorHandle
) -> None:
    stopped = f"+1415{uuid.uuid4().int % 10_000_000:07d}"
    sim.configure(stop_list={stopped})
    p = path()
    first, second = await p.send(sms(1, to=stopped), sms(2, to=stopped))
    assert first.outcomes == [("m1", "dead_lettered", "twilio_21610")]
    assert second.outcomes == [("m1", "skipped", "suppressed")]
    assert sim.stats()["answers"].get("400/21610") == 1, "asked once, never retried"
