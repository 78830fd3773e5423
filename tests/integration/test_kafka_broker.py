"""The foundation: a real broker, Avro records, a consumer group that resumes where it committed."""

from __future__ import annotations

import io
import uuid

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

pytestmark = pytest.mark.integration

SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Ping",
        "fields": [{"name": "n", "type": "int"}, {"name": "user", "type": "string"}],
    }
)


def encode(record: dict[str, object]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMA, record)
    return buf.getvalue()


def decode(data: bytes) -> dict[str, object]:
    return fastavro.schemaless_reader(io.BytesIO(data), SCHEMA, SCHEMA)  # type: ignore[return-value]


def consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )


def take(c: Consumer, count: int, timeout_s: float = 30.0) -> list[dict[str, object]]:
    """Poll until `count` records arrived (or fail), returning them decoded, in order."""
    out: list[dict[str, object]] = []
    for _ in range(int(timeout_s * 10)):
        msg = c.poll(0.1)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        out.append(decode(msg.value()))
        if len(out) == count:
            return out
    pytest.fail(f"only {len(out)} of {count} records arrived in {timeout_s} s")


def test_a_new_consumer_in_the_group_resumes_after_the_last_committed_offset(
    kafka_bootstrap: str, new_topic
) -> None:
    topic = new_topic()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(10):
        producer.produce(topic, key=b"user-1", value=encode({"n": n, "user": "user-1"}))
    assert producer.flush(30) == 0

    group = f"g-{uuid.uuid4().hex[:8]}"
    first = consumer(kafka_bootstrap, group)
    first.subscribe([topic])
    got = take(first, 4)
    assert [r["n"] for r in got] == [0, 1, 2, 3]
    # Commit "the next offset to read" for the fourth record: Kafka's convention.
    first.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
    first.close()

    second = consumer(kafka_bootstrap, group)
    second.subscribe([topic])
    resumed = take(second, 6)
    second.close()
    assert [r["n"] for r in resumed] == [4, 5, 6, 7, 8, 9]
    assert all(r["user"] == "user-1" for r in resumed)
