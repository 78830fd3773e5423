"""The webhook receiver on loopback for the tests: `kafka-twilio webhooks` run in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
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
from consumer.webhooks.main import serve


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
    """Start the receiver (port 0: any free one) and stop it on exit."""
    settings.webhooks.port = 0
    settings.webhooks.host = "127.0.0.1"
    loop = asyncio.new_event_loop()
    metrics = Metrics()
    stop = asyncio.Event()
    ready: asyncio.Future[int] = loop.create_future()
    done = threading.Event()

    def run() -> None:
        try:
            loop.run_until_complete(serve(settings, ready=ready, stop=stop, metrics=metrics))
        finally:
            done.set()

    thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(asyncio.wait_for(_wait(ready), 30), loop).result(timeout=40)
    try:
        yield ReceiverHandle(port, metrics)
    finally:
        loop.call_soon_threadsafe(stop.set)
        done.wait(timeout=30)
        thread.join(timeout=5)
        loop.close()


async def _wait(ready: asyncio.Future[int]) -> int:
    return await ready


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
