"""The webhook receiver on loopback for the tests: `kafka-twilio webhooks` run in a thread of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer

from consumer.events.decode import Decoder
from consumer.events.model import Event
from consumer.metrics import Metrics
from consumer.settings import Settings
from consumer.webhooks.main import running_receiver as receiver_thread


@dataclass
class ReceiverHandle:
    port: int
    metrics: Metrics

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/twilio/status"

    @property
    def inbound_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/twilio/inbound"

    def count(self, kind: str, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "kafka_twilio_webhook_requests_total", {"kind": kind, "result": result}
        )
        return value or 0.0


@contextmanager
def running_receiver(settings: Settings) -> Iterator[ReceiverHandle]:
    """Start the receiver (port 0: any free one, loopback) and stop it on exit."""
    settings.webhooks.port = 0
    settings.webhooks.host = "127.0.0.1"
    with receiver_thread(settings) as (port, metrics):
        yield ReceiverHandle(port, metrics)


def read_events(bootstrap: str, topic: str, expected: int, schemas_dir: Any, timeout_s: float = 20) -> list[
    tuple[str, Event]
]:  # fmt: skip
    """(key, decoded event) of every record of `topic`, once `expected` arrived (or the time is up)."""
    decoder = Decoder(schemas_dir=schemas_dir)
    return [(k, decoder.decode(v)) for k, v in read_records(bootstrap, topic, expected, timeout_s) if v]


def read_records(bootstrap: str, topic: str, expected: int, timeout_s: float = 20) -> list[
    tuple[str, bytes | None]
]:  # fmt: skip
    """(key, value) of the records of `topic` from its start; reads a moment past `expected`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    c.subscribe([topic])
    out: list[tuple[str, bytes | None]] = []
    try:
        polls = int(timeout_s * 10)
        extra = 10
        while polls > 0 and (len(out) < expected or extra > 0):
            polls -= 1
            if len(out) >= expected:
                extra -= 1
            msg = c.poll(0.1)
            if msg is not None and msg.error() is None:
                out.append(((msg.key() or b"").decode(), msg.value()))
    finally:
        c.close()
    return out
