"""The ledger's changelog topic: its source of truth in Kafka, so no other database is needed.

Every send writes its intent here before the request and its outcome (sent, or released) after it,
to a compacted topic (`cleanup.policy=compact,delete`, so expired entries also age out by time). It is
co-partitioned with the source topics: a send caused by source partition p is recorded in changelog
partition p mod N. When a replica is assigned partition p it reads changelog partition p mod N to its
end before processing p, so the previous owner's sends, and its intents without an outcome (a crash
between the intent and the outcome), are known across rebalances and restarts; those intents are
settled by asking Twilio (consumer.service.exchange) before anything is sent again.
"""

from __future__ import annotations

import logging
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
from consumer.state.ledger import LedgerEntry, decode_entry, encode_entry

log = logging.getLogger(__name__)

DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
TOPIC_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": str(DEFAULT_RETENTION_MS)}


class Changelog:
    """Read changelog partitions to their end; write entries, reporting Kafka's acknowledgement."""

    def __init__(self, clients: KafkaClients, producer: ProducerLike, topic: str, partitions: int) -> None:
        self.clients = clients
        self.producer = producer
        self.topic = topic
        self.partitions = partitions

    @classmethod
    def open(cls, clients: KafkaClients, producer: ProducerLike, topic: str, sources: list[str]) -> Changelog:
        """The changelog of `sources`, creating the topic if missing (blocking: call off the loop)."""
        partitions = ensure_topic(clients.admin(), topic, like=sources, config=TOPIC_CONFIG)
        return cls(clients, producer, topic, partitions)

    def slot(self, source_partition: int) -> int:
        """The changelog partition that records sends caused by `source_partition`."""
        return source_partition % self.partitions

    def read(self, slots: Iterable[int], timeout_s: float = 60.0) -> dict[int, list[LedgerEntry]]:
        """Every entry of these changelog partitions, in order, read to their end (blocking)."""
        out: dict[int, list[LedgerEntry]] = {s: [] for s in sorted(set(slots))}
        if not out:
            return out
        reader = self.clients.consumer({
            "group.id": f"kafka-twilio-restore-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        })  # fmt: skip
        try:
            ends = {s: high for s in out if (high := self._end(reader, s)) is not None}
            if ends:
                reader.assign([TopicPartition(self.topic, s, OFFSET_BEGINNING) for s in ends])
                self._read_to_end(reader, ends, out, time.monotonic() + timeout_s)
            if ends:
                log.warning(
                    "de-duplication state incomplete: changelog not read to its end in %.0f s", timeout_s
                )
        finally:
            reader.close()
        return out

    def _end(self, reader: ConsumerLike, slot: int) -> int | None:
        low, high = reader.get_watermark_offsets(TopicPartition(self.topic, slot), timeout=10)
        return high if high > low else None

    def _read_to_end(
        self, reader: ConsumerLike, ends: dict[int, int], out: dict[int, list[LedgerEntry]], deadline: float
    ) -> None:
        while ends and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.1):
                slot, offset, key, value = msg.partition(), msg.offset(), msg.key(), msg.value()
                if slot is None:
                    continue
                if msg.error() is None and key is not None and value is not None:
                    entry = decode_entry(key, value)
                    if entry is not None:
                        out[slot].append(entry)
                if slot in ends and (
                    msg.error() is not None or (offset is not None and offset + 1 >= ends[slot])
                ):
                    del ends[slot]

    def write(
        self, entry: LedgerEntry, source_partition: int, on_delivery: Callable[[KafkaError | None], None]
    ) -> None:
        """Write `entry`; `on_delivery` runs once Kafka acknowledged (None) or refused it."""

        def delivered(err: Any, _msg: Any) -> None:
            on_delivery(None if err is None else kafka_error(err, f"ledger write to {self.topic!r} failed"))

        try:
            self.producer.produce(
                self.topic, key=entry.key.encode(), value=encode_entry(entry),
                partition=self.slot(source_partition), on_delivery=on_loop(delivered),
            )  # fmt: skip
        except (BufferError, KafkaException) as exc:
            # Refused before queueing (queue full, broker gone): the caller must still hear of it once.
            on_delivery(kafka_error(exc, f"ledger write to {self.topic!r} refused"))
