"""The suppression list on the real broker: loaded as a table at start-up, followed while running."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Producer

from consumer.events.recipients import Channel
from consumer.kafka.clients import KafkaClients
from consumer.pipeline.message import OutboundMessage
from consumer.state.suppression import Change
from consumer.state.suppression_topic import SuppressionList, message_key

pytestmark = pytest.mark.integration

MESSAGE = OutboundMessage(
    mapping_id="m", channel=Channel.SMS, to="+14155550100", recipient="+14155550100", sender="MG1",
    sender_kind="messaging_service", params=(), segments=1, dedup_key="", dedup_window_s=0, timezone=None,
    quiet_hours=None, frequency_cap=None,
)  # fmt: skip


def write(bootstrap: str, topic: str, change: Change) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=change.key.encode(), value=change.value())
    assert producer.flush(10) == 0


async def eventually(condition: object, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_the_list_is_loaded_at_start_up_and_follows_changes_written_elsewhere(
    kafka_bootstrap: str,
) -> None:
    topic = f"suppressions-{uuid.uuid4().hex[:8]}"
    clients = KafkaClients({"bootstrap.servers": kafka_bootstrap})
    producer = clients.producer({})
    first = SuppressionList(clients, producer, topic, [21610])
    assert await asyncio.to_thread(first.load) == 0  # created, empty
    first.close()
    write(kafka_bootstrap, topic, Change(message_key(MESSAGE), "stop", 1.0))

    running = SuppressionList(clients, producer, topic, [21610])
    assert await asyncio.to_thread(running.load) == 1  # what was written before the start
    assert running.blocks(MESSAGE)
    running.follow(asyncio.get_running_loop())
    try:
        write(kafka_bootstrap, topic, Change(message_key(MESSAGE), None))  # START, from the receiver
        await eventually(lambda: not running.blocks(MESSAGE), "the START to be followed")
        running.add(MESSAGE, 21610)  # Twilio refused a send: suppressed at once, and written
        assert running.blocks(MESSAGE)
        other = MESSAGE.__class__(**{**MESSAGE.__dict__, "recipient": "+14155550101", "to": "+14155550101"})
        running.add(other, 30003)  # not a listed code: for this run only, never written
        assert running.blocks(other)
    finally:
        running.close()
    producer.flush(10)
    again = SuppressionList(clients, producer, topic, [21610])
    try:
        assert await asyncio.to_thread(again.load) == 1
        assert again.blocks(MESSAGE)
        assert not again.blocks(other)
    finally:
        again.close()
