"""Dead letters on the real broker: one refused as too large is still written, without its value."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, Producer

from consumer.errors import RenderError
from consumer.kafka import deadletter as dl
from consumer.kafka.deadletter import DeadLetterWriter, parse_dead_letter_headers

pytestmark = pytest.mark.integration


def test_a_dead_letter_the_broker_refuses_as_too_large_is_written_without_its_value(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    dlq = new_topic(config={"max.message.bytes": "4096"})  # the topic takes less than the record
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    reports: list[Exception | None] = []
    DeadLetterWriter(producer, dlq).write(
        topic="events", partition=2, offset=41, key=b"user-1", value=b"x" * 20_000,
        headers=[("trace", b"abc")], error=RenderError("body too long", reason="body_too_long"),
        reason="body_too_long", mapping_id="m1", now=datetime.now(UTC), on_delivery=reports.append,
    )  # fmt: skip
    assert producer.flush(30) == 0
    assert reports == [None], "reported once, as written"

    reader = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    reader.subscribe([dlq])
    try:
        message = None
        for _ in range(200):
            message = reader.poll(0.1)
            if message is not None and message.error() is None:
                break
        assert message is not None
        assert message.error() is None
        assert message.value() is None
        assert message.key() == b"user-1"
        headers = message.headers()
        assert (dl.VALUE_DROPPED, b"20000 bytes: too large for the dead-letter topic") in headers
        assert ("trace", b"abc") in headers, "the original headers are kept"
        info = parse_dead_letter_headers(headers)
        assert (info.topic, info.partition, info.offset, info.reason) == ("events", 2, 41, "body_too_long")
    finally:
        reader.close()
