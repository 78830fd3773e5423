"""The intake's wait for writer schemas, driven through the service's loop over the stubs in
tests/fakes.py: a registry that is down holds its records (never dead-letters them), holds the
partition's later records behind them, and lets other partitions go on."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

from consumer.events.decode import Decoder
from consumer.events.encode import encode_event
from consumer.events.registry import make_registry_client
from tests.unit.service.test_service import ROOT, TOPIC, Replica, event, until


class Registry:
    """A confluent-kafka mock registry behind a switch: `down` refuses like a stopped server."""

    def __init__(self) -> None:
        self.inner = make_registry_client(f"mock://intake-{uuid.uuid4().hex[:8]}")
        self.down = threading.Event()
        self.asked: list[int] = []

    def get_schema(self, schema_id: int) -> Any:
        self.asked.append(schema_id)
        if self.down.is_set():
            raise ConnectionRefusedError("connection refused")
        return self.inner.get_schema(schema_id)


def confluent(registry: Registry, n: int, phone: str | None = None) -> bytes:
    data = {
        "type": "track", "event": "Order Completed", "messageId": f"c-{n}", "userId": f"u-{n}",
        "properties": {"order_id": f"C-{n}", "phone": phone or f"+1415555{n:04d}"},
    }  # fmt: skip
    return encode_event(
        data, encoding="confluent", schemas_dir=ROOT / "schemas", registry=registry.inner, subject="e-value"
    )


def replica(tmp_path: Path, *, down: bool) -> tuple[Replica, Registry]:
    """A replica decoding through a fresh registry, which starts down (refusing) or up."""
    registry = Registry()
    if down:
        registry.down.set()
    r = Replica(tmp_path)
    r.decoder = Decoder(schemas_dir=ROOT / "schemas", registry=registry)
    return r, registry


def append_confluent(r: Replica, registry: Registry, partition: int, numbers: range) -> None:
    for n in numbers:
        r.kafka.cluster.append(TOPIC, partition, confluent(registry, n))


def bodies(r: Replica) -> list[str]:
    return [dict(params)["Body"] for params in r.twilio.requests]


async def test_a_registry_outage_holds_its_partition_and_dead_letters_nothing_then_sends_everything(
    tmp_path: Path,
) -> None:
    r, registry = replica(tmp_path, down=True)
    async with r:
        append_confluent(r, registry, 0, range(5))
        for n in range(10, 15):
            r.kafka.cluster.append(TOPIC, 1, event(n))  # JSON: needs no registry
        r.consumer.rebalance(assign=[(TOPIC, 0), (TOPIC, 1)])
        await until(lambda: r.committed(1) == 5)  # the other partition goes on
        await until(lambda: len(registry.asked) >= 3)  # asked again and again, with backoff
        assert r.service is not None
        ready, checks = r.service.readiness()
        assert (ready, checks["schema_registry"]) == (False, False)
        reason = r.service.readiness_reasons()["schema_registry"]
        assert "5 records of 1 partitions wait" in reason
        assert "connection refused" in reason
        assert r.committed(0) is None
        assert r.sample("kafka_twilio_records_waiting_for_schema") == 5
        assert r.sample("kafka_twilio_dead_letters_total", stage="decode", reason="unknown_schema") == 0
        registry.down.clear()
        await until(lambda: r.committed(0) == 5)
        assert r.service.readiness()[1]["schema_registry"] is True
    assert r.kafka.cluster.topics.get("dlq", [[]])[0] == []
    assert [b for b in bodies(r) if b.startswith("Order C-")] == [f"Order C-{n}" for n in range(5)]
    assert r.sample("kafka_twilio_records_waiting_for_schema") == 0


async def test_records_behind_one_that_waits_for_its_schema_wait_too_even_when_they_need_none(
    tmp_path: Path,
) -> None:
    r, registry = replica(tmp_path, down=True)
    async with r:
        # One recipient: the Avro record, then a JSON one that could be decoded at once.
        r.kafka.cluster.append(TOPIC, 0, confluent(registry, 1, phone="+14155550001"))
        r.kafka.cluster.append(TOPIC, 0, event(1))
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: len(registry.asked) >= 2)
        assert r.twilio.requests == []
        registry.down.clear()
        await until(lambda: r.committed(0) == 2)
    assert bodies(r) == ["Order C-1", "Order A-1"]


async def test_a_schema_the_registry_does_not_have_dead_letters_that_record_and_the_partition_goes_on(
    tmp_path: Path,
) -> None:
    r, registry = replica(tmp_path, down=False)
    async with r:
        r.kafka.cluster.append(TOPIC, 0, b"\x00\x00\x00\x03\xe7" + confluent(registry, 0)[5:])  # id 999
        append_confluent(r, registry, 0, range(1, 3))
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: r.committed(0) == 3)
    assert [outcome for _, outcome in r.outcomes(0)] == [
        [("", "dead_lettered", "unknown_schema")],
        [("order-sms", "sent", "queued")],
        [("order-sms", "sent", "queued")],
    ]
    assert registry.asked.count(999) == 1
    assert len(set(registry.asked) - {999}) == 1, "the known schema was asked for once, then cached"


async def test_a_partition_revoked_while_it_waits_drops_its_held_records_unsent_and_uncommitted(
    tmp_path: Path,
) -> None:
    r, registry = replica(tmp_path, down=True)
    async with r:
        append_confluent(r, registry, 0, range(3))
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: r.sample("kafka_twilio_records_waiting_for_schema") == 3)
        r.consumer.rebalance(revoke=[(TOPIC, 0)])
        await until(lambda: r.sample("kafka_twilio_records_waiting_for_schema") == 0)
        registry.down.clear()
    assert r.twilio.requests == []
    assert r.committed(0) is None
    assert r.journal == []


def add_source(mappings: Path) -> None:
    with mappings.open("a") as file:
        file.write("sources:\n  - {topic: events, name: shop, event: Order Completed, messageId: ref}\n")


async def test_a_topics_own_records_go_through_its_source_and_one_lacking_a_field_is_a_counted_skip(
    tmp_path: Path,
) -> None:
    r = Replica(tmp_path)
    add_source(Path(r.settings.service.mappings))
    records = [{"ref": "R-1", "order_id": "S-1", "phone": "+14155550101"}, {"order_id": "S-2"},
               {"ref": "R-3", "order_id": "S-3", "phone": "+14155550103"}]  # fmt: skip
    async with r:
        for record in records:
            r.kafka.cluster.append(TOPIC, 0, json.dumps(record).encode())
        r.kafka.cluster.append(TOPIC, 0, event(4))  # a Segment event on the same topic: as before
        r.consumer.rebalance(assign=[(TOPIC, 0)])
        await until(lambda: r.committed(0) == 4)
    assert [o[0][1:] for _, o in sorted(r.outcomes())][1] == ("skipped", "missing_field")
    assert bodies(r) == ["Order S-1", "Order S-3", "Order A-4"]
    assert r.sample("kafka_twilio_source_records_total", source="shop", result="decoded") == 2
    assert r.sample("kafka_twilio_source_records_total", source="shop", result="skipped") == 1
