"""The suppression list's topic: loaded as a table at start-up, followed while running, written to.

The topic is compacted with no time limit (an opt-out lasts until START), keyed as
`consumer.state.suppression`. Every replica (and the webhook receiver, which writes STOP/START and
permanent failures) shares it: a replica reads it to its end before consuming, so a recipient who
replied STOP before a restart is still suppressed after it, then follows it on a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from consumer.errors import KafkaError
from consumer.kafka.clients import ConsumerLike, KafkaClients, ProducerLike
from consumer.kafka.errors import kafka_error
from consumer.kafka.reports import on_loop
from consumer.kafka.topics import ensure_topic
from consumer.metrics import Metrics
from consumer.pipeline.message import OutboundMessage
from consumer.settings import Settings
from consumer.state.suppression import (
    Change,
    RunSuppressions,
    SuppressionTable,
    decode_change,
    outbound_scope,
    suppression_key,
)

log = logging.getLogger(__name__)

TOPIC_CONFIG = {"cleanup.policy": "compact"}
LOAD_TIMEOUT_S = 60.0


def ensure_suppression_topic(clients: KafkaClients, topic: str) -> int:
    """Create the compacted topic if missing (blocking); return its partition count."""
    return ensure_topic(clients.admin(), topic, like=[], config=TOPIC_CONFIG)


def message_key(message: OutboundMessage) -> str:
    """The list's key for an outbound message's recipient in its sender's scope."""
    return suppression_key(outbound_scope(message.sender, message.sender_kind), message.recipient)


def read_all(reader: ConsumerLike, topic: str, deadline: float) -> list[Change]:
    """Assign every partition of `topic` from its beginning and read to the current end (blocking)."""
    meta = reader.list_topics(topic, timeout=10)
    partitions = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
    ends: dict[int, int] = {}
    for p in partitions:
        low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    changes: list[Change] = []
    while ends and time.monotonic() < deadline:
        for msg in reader.consume(1000, 0.1):
            if msg.error() is not None:
                continue
            change = decode_change(msg.key(), msg.value())
            if change is not None:
                changes.append(change)
            if msg.partition() in ends and msg.offset() + 1 >= ends[msg.partition()]:
                del ends[msg.partition()]
    if ends:
        raise KafkaError(f"the suppression topic {topic!r} could not be read to its end in time")
    return changes


def _log_failure(err: KafkaError | None) -> None:
    if err is not None:  # the table has it already; the next 21610 from Twilio writes it again
        log.error("suppression write failed: %s", err.message)


class SuppressionList:
    """The table of one process, kept equal to the topic; see the module docstring."""

    def __init__(
        self, clients: KafkaClients, producer: ProducerLike, topic: str, codes: Iterable[int],
        on_size: Callable[[int], object] | None = None,
    ) -> None:  # fmt: skip
        self.clients = clients
        self.producer = producer
        self.topic = topic
        self.codes = frozenset(codes)
        self.table = SuppressionTable()
        self.run_only = RunSuppressions()  # refusals for a recipient whose code is not listed: this run
        self.on_size = on_size  # told the entry count after loading and after each change (a gauge)
        self._reader: ConsumerLike | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, timeout_s: float = LOAD_TIMEOUT_S) -> int:
        """Create the topic if missing and read it to its end (blocking: off the loop); the entry count."""
        ensure_suppression_topic(self.clients, self.topic)
        self._reader = self.clients.consumer({
            "group.id": f"kafka-twilio-suppression-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "enable.partition.eof": False,
        })  # fmt: skip
        for change in read_all(self._reader, self.topic, time.monotonic() + timeout_s):
            self.table.apply(change)
        if self.on_size is not None:
            self.on_size(len(self.table))
        return len(self.table)

    @classmethod
    def loaded(cls, clients: KafkaClients, producer: ProducerLike, topic: str, codes: Iterable[int],
               on_size: Callable[[int], object] | None = None) -> SuppressionList:  # fmt: skip
        """A list read to the end of its topic (blocking: off the loop); `follow` it next."""
        suppressions = cls(clients, producer, topic, codes, on_size)
        suppressions.load()
        return suppressions

    def follow(self, loop: asyncio.AbstractEventLoop) -> None:
        """Apply later changes (from any writer) on `loop` as they arrive, from a thread of its own."""
        reader = self._reader
        assert reader is not None, "load() first"

        def serve() -> None:
            while not self._stopping.is_set():
                try:
                    records = reader.consume(500, 0.2)
                except (KafkaException, RuntimeError) as exc:
                    log.warning("suppression topic: %s", exc)
                    continue
                changes = [
                    c for m in records if m.error() is None and (c := decode_change(m.key(), m.value()))
                ]
                if changes:
                    loop.call_soon_threadsafe(self._apply, changes)

        self._thread = threading.Thread(target=serve, name="kafka-suppression", daemon=True)
        self._thread.start()

    def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            self.table.apply(change)
        if self.on_size is not None:
            self.on_size(len(self.table))

    def blocks(self, message: OutboundMessage) -> bool:
        """True when `message`'s recipient is on the list for its sender."""
        # The key is a hash: not computed while the list is empty (most sends of most deployments).
        return (bool(self.table) and message_key(message) in self.table) or self.run_only.blocks(message)

    def add(self, message: OutboundMessage, code: int | None) -> None:
        """Twilio refused `message` for its recipient (21610, …): suppress them if `code` is listed.

        The table changes at once; the topic write is for the other replicas and the next start."""
        if code not in self.codes:
            self.run_only.add(message, code)
            return
        change = Change(message_key(message), f"twilio_{code}", time.time())
        self._apply([change])
        self.write(change, _log_failure)

    def write(self, change: Change, on_delivery: Callable[[KafkaError | None], Any]) -> None:
        """Produce `change`; `on_delivery` gets None once Kafka acknowledged it, else the error."""

        def delivered(err: Any, _msg: Any) -> None:
            on_delivery(None if err is None else kafka_error(err, f"write to {self.topic!r} failed"))

        try:
            self.producer.produce(self.topic, key=change.key.encode(), value=change.value(),
                                  on_delivery=on_loop(delivered))  # fmt: skip
        except (BufferError, KafkaException) as exc:
            on_delivery(kafka_error(exc, f"write to {self.topic!r} refused"))

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def open_suppressions(
    clients: KafkaClients, producer: ProducerLike, settings: Settings, metrics: Metrics
) -> SuppressionList:
    """The service's list, read to its end (blocking: on the Kafka thread); `follow` it on the loop."""
    return SuppressionList.loaded(
        clients, producer, settings.kafka.suppression_topic, settings.service.suppression_codes,
        metrics.suppressed_recipients.set,
    )  # fmt: skip
