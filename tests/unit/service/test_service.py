"""The service's run loop driven through stubs of confluent-kafka and Twilio (tests/fakes.py).

These are the loop's own rules: back-pressure, rebalance handling, the generation guard, commits,
readiness. The same behaviours against the real broker and the simulator are in tests/integration.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError as RdKafkaError

from consumer.errors import ErrorClass
from consumer.events.decode import Decoder
from consumer.metrics import Metrics
from consumer.service.parts import Parts
from consumer.service.service import Service
from consumer.settings import load_settings
from tests.fake_twilio import FakeTwilio, twilio_error
from tests.fakes import FakeKafka, MessageStub

ROOT = Path(__file__).resolve().parents[3]
TOPIC = "events"
MAPPING = textwrap.dedent(
    """
    version: 1
    mappings:
      - id: order-sms
        trigger: {event: Order Completed}
        channel: sms
        recipient: {sources: [properties.phone]}
        sender: {messaging_service: MG55555555555555555555555555555555}
        content: {body: "Order {{ properties.order_id }}"}
        policies: {consent: allow_unknown}
    """
)


def event(n: int) -> bytes:
    return json.dumps({
        "type": "track", "event": "Order Completed", "messageId": f"m-{n}", "userId": f"u-{n}",
        "properties": {"order_id": f"A-{n}", "phone": f"+1415555{n:04d}"},
    }).encode()  # fmt: skip


async def until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    """Wait until `condition()` holds; fail (not hang) after a generous bound."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110  the condition is plain state, with no event to wait on
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout_s)


class Replica:
    """One service run over a fake cluster, as a context manager."""

    def __init__(self, tmp_path: Path, kafka: FakeKafka | None = None, **env: Any) -> None:
        mappings = tmp_path / "mappings.yaml"
        mappings.write_text(MAPPING)
        values = {
            "KAFKA_TOPICS": TOPIC, "KAFKA_GROUP_ID": "g", "KAFKA_DEDUP_TOPIC": "sent",
            "KAFKA_DEAD_LETTER_TOPIC": "dlq", "CONSUMER_MAPPINGS": str(mappings),
            "CONSUMER_SCHEMAS_DIR": str(ROOT / "schemas"), "CONSUMER_METRICS_PORT": "0",
            "CONSUMER_METRICS_HOST": "127.0.0.1", "CONSUMER_COMMIT_INTERVAL_S": "0.05",
            "CONSUMER_DRAIN_GRACE_S": "2", **{k: str(v) for k, v in env.items()},
        }  # fmt: skip
        self.settings = load_settings(environ=values)
        self.kafka = kafka or FakeKafka()
        self.kafka.cluster.create(TOPIC, 2)
        self.twilio = FakeTwilio()
        self.journal: list[tuple[str, int, int, list[tuple[str, str, str]]]] = []
        self.metrics = Metrics()
        self.decoder: Any = Decoder(schemas_dir=ROOT / "schemas")
        self.service: Service | None = None

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def committed(self, partition: int) -> int | None:
        return self.kafka.cluster.committed.get(("g", TOPIC, partition))

    def outcomes(self, partition: int = 0) -> list[tuple[int, list[tuple[str, str, str]]]]:
        return [(o, r) for _, p, o, r in self.journal if p == partition]

    async def __aenter__(self) -> Replica:
        parts = Parts(client=self.twilio, kafka=self.kafka.clients(), decoder=self.decoder)
        self.service = Service(
            self.settings, parts, metrics=self.metrics, journal=lambda *r: self.journal.append(r),
            handle_signals=False,
        )  # fmt: skip
        self.task = asyncio.create_task(self.service.run())
        await until(lambda: any(c.callbacks for c in self.kafka.consumers) or self.task.done())
        self.consumer = self.kafka.group_consumer
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.service is not None
        self.service.request_stop()
        assert await asyncio.wait_for(self.task, 30) == 0


def produce(kafka: FakeKafka, count: int, partition: int = 0, start: int = 0) -> None:
    for n in range(start, start + count):
        kafka.cluster.append(TOPIC, partition, event(n))


async def test_partitions_pause_at_the_buffer_limit_and_resume_at_half(tmp_path: Path) -> None:
    async with Replica(tmp_path, CONSUMER_MAX_BUFFERED=10) as r:
        r.twilio.hold = asyncio.Event()  # nothing finishes: records pile up unfinished
        produce(r.kafka, 30)
        r.consumer.rebalance(assign=[(TOPIC, 0), (TOPIC, 1)])
        await until(lambda: r.consumer.paused == {(TOPIC, 0), (TOPIC, 1)})
        assert r.sample("kafka_twilio_buffered_records") >= 10
        assert r.sample("kafka_twilio_paused_partitions") == 2
        r.twilio.hold.set()
        await until(lambda: not r.consumer.paused)
        await until(lambda: r.committed(0) == 30)
    assert len(r.twilio.requests) == 30


async def test_a_lost_partition_drops_its_records_and_commits_nothing(tmp_path: Path) -> None:
    async with Replica(tmp_path) as r:
        r.twilio.hold = asyncio.Event()
        produce(r.kafka, 5)
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: len(r.twilio.requests) == 5)
        r.consumer.rebalance(lose=[(TOPIC, 0)])
        await until(lambda: r.sample("kafka_twilio_assigned_partitions") == 0)
        r.twilio.hold.set()
        await asyncio.sleep(0.2)  # the next commit rounds would commit anything finished
        assert r.journal == [], "the lost partition's sends were dropped, not finished"
        assert r.committed(0) is None, "another member may own it: nothing is committed"
        assert r.sample("kafka_twilio_buffered_records") == 0


async def test_an_outcome_from_before_a_revoke_cannot_finish_an_offset_of_a_later_assignment(
    tmp_path: Path,
) -> None:
    async with Replica(tmp_path) as r:
        producer = r.kafka.producers[0]
        producer.held.add("dlq")  # the broker has not acknowledged the dead letter yet
        r.twilio.script.append(twilio_error(ErrorClass.PERMANENT, 21617))  # dead-lettered, the first time
        produce(r.kafka, 1)
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        # The dead letter is queued; its outcome waits for the broker's acknowledgement.
        await until(lambda: any(queued[0] == "dlq" for queued in producer.queue))
        r.consumer.rebalance(lose=[(TOPIC, 0)])
        await until(lambda: r.sample("kafka_twilio_assigned_partitions") == 0)
        r.twilio.hold = asyncio.Event()  # the new assignment's send of offset 0 stays in flight
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: len(r.twilio.requests) == 2)
        producer.release("dlq")  # now the old dead letter is acknowledged: the old generation's outcome
        await until(lambda: len(producer) == 0)
        await asyncio.sleep(0.2)  # several commit rounds
        assert r.committed(0) is None, "offset 0 of the new assignment is still being sent"
        assert r.journal == []
        r.twilio.hold.set()
        await until(lambda: r.committed(0) == 1)
    assert [(o, results) for o, results in r.outcomes()] == [(0, [("order-sms", "sent", "queued")])], (
        "finished once, by the assignment that owns it"
    )


async def test_a_commit_kafka_refuses_for_one_partition_is_counted_and_retried(tmp_path: Path) -> None:
    async with Replica(tmp_path) as r:
        refusing = {"on": True}
        r.consumer.commit_error = lambda tp: (
            RdKafkaError(RdKafkaError.REBALANCE_IN_PROGRESS) if refusing["on"] and tp == (TOPIC, 1) else None
        )
        produce(r.kafka, 3, partition=0)
        produce(r.kafka, 3, partition=1, start=10)
        r.consumer.rebalance(assign=[(TOPIC, 0), (TOPIC, 1)])
        await until(lambda: r.committed(0) == 3)
        await until(lambda: r.sample("kafka_twilio_commits_total", result="partial") > 0)
        assert r.committed(1) is None
        refusing["on"] = False
        await until(lambda: r.committed(1) == 3)


async def test_consumer_errors_are_counted_by_code_and_the_partition_goes_on(tmp_path: Path) -> None:
    async with Replica(tmp_path) as r:
        broken = MessageStub(TOPIC, 0, -1, None, error=RdKafkaError(RdKafkaError._TRANSPORT))
        r.consumer.errors.append(broken)
        produce(r.kafka, 2)
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: r.committed(0) == 2)
        assert r.sample("kafka_twilio_kafka_errors_total", source="consumer", code="_TRANSPORT") == 1


async def test_readiness_follows_the_brokers_and_recovers_without_a_rebalance(tmp_path: Path) -> None:
    r = Replica(tmp_path, CONSUMER_LAG_INTERVAL_S="0.05")
    assert r.service is None
    async with r:
        assert r.service is not None
        ready, checks = r.service.readiness()
        assert not ready
        assert checks["partitions_assigned"] is False
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: r.service is not None and r.service.readiness()[0])
        r.consumer.config["error_cb"](RdKafkaError(RdKafkaError._ALL_BROKERS_DOWN))
        assert r.service.readiness()[1]["broker_reachable"] is False
        # The periodic lag check asks a broker again (the fake cluster answers): ready again.
        await until(lambda: r.service is not None and r.service.readiness()[0])
        assert r.sample("kafka_twilio_kafka_errors_total", source="client", code="_ALL_BROKERS_DOWN") == 1


async def test_a_tombstone_is_skipped_and_a_decoder_bug_dead_letters_one_record(tmp_path: Path) -> None:
    class Buggy(Decoder):
        def decode(self, value: bytes | None, *args: Any, **kwargs: Any) -> Any:
            if value == b'{"bug": true}':
                raise ZeroDivisionError("a bug in decode")
            return super().decode(value, *args, **kwargs)

    r = Replica(tmp_path)
    r.decoder = Buggy(schemas_dir=ROOT / "schemas")
    async with r:
        r.kafka.cluster.append(TOPIC, 0, None, key=b"deleted")  # a tombstone
        r.kafka.cluster.append(TOPIC, 0, b'{"bug": true}')
        produce(r.kafka, 1, start=2)
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: r.committed(0) == 3)
    assert dict(r.outcomes()) == {
        0: [("", "skipped", "tombstone")],
        1: [("", "dead_lettered", "internal")],
        2: [("order-sms", "sent", "queued")],
    }
    [dead] = r.kafka.cluster.topics["dlq"][0]
    assert dead.value() == b'{"bug": true}'


@pytest.mark.parametrize("partitions", [1, 2])
async def test_stopping_drains_commits_and_returns_zero(tmp_path: Path, partitions: int) -> None:
    async with Replica(tmp_path) as r:
        for p in range(partitions):
            produce(r.kafka, 4, partition=p, start=10 * p)
        r.consumer.rebalance(assign=[(TOPIC, p) for p in range(partitions)])
        await until(lambda: len(r.twilio.requests) == 4 * partitions)
    assert all(r.committed(p) == 4 for p in range(partitions)), "the final commit covers everything finished"
    assert r.consumer.closed


async def test_a_twilio_outage_pauses_the_partitions_reports_not_ready_and_resumes_without_dead_letters(
    tmp_path: Path,
) -> None:
    async with Replica(tmp_path) as r:
        assert r.service is not None
        r.twilio.down = True
        produce(r.kafka, 20)
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: r.service is not None and not r.service.readiness()[1]["twilio_available"])
        await until(lambda: r.consumer.paused == {(TOPIC, 0)})
        assert r.sample("kafka_twilio_twilio_available") == 0
        r.twilio.down = False  # Twilio answers again: the probe closes the breaker
        await until(lambda: r.committed(0) == 20)
        assert r.service.readiness()[1]["twilio_available"]
        assert not r.consumer.paused
    assert [results for _, results in r.outcomes()] == [[("order-sms", "sent", "queued")]] * 20
    assert "dlq" not in r.kafka.cluster.topics


async def test_the_budget_share_follows_the_partitions_owned_up_on_assign_and_down_after_revoke(
    tmp_path: Path,
) -> None:
    async with Replica(tmp_path, CONSUMER_MAX_IN_FLIGHT=40, TWILIO_ACCOUNT_CONCURRENCY=20) as r:
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: r.sample("kafka_twilio_assigned_partitions") == 1)
        assert r.sample("kafka_twilio_partition_share") == 0.5
        assert r.sample("kafka_twilio_concurrency_limit") == 10, "half the account's 20, not of 40"
        r.consumer.rebalance(assign=[(TOPIC, 1)])
        await until(lambda: r.sample("kafka_twilio_partition_share") == 1.0)
        assert r.sample("kafka_twilio_concurrency_limit") == 20
        r.consumer.rebalance(revoke=[(TOPIC, 0)])
        await until(lambda: r.sample("kafka_twilio_partition_share") == 0.5)
        assert r.sample("kafka_twilio_concurrency_limit") == 10
