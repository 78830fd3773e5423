"""The ledger's changelog topic: its source of truth in Kafka (the state store on disk is its copy).

Every send writes its intent here before the request and its outcome (sent, or released) after it,
to a compacted topic (`cleanup.policy=compact,delete`, so expired entries also age out by time). It is
co-partitioned with the source topics: a send caused by source partition p is recorded in changelog
partition p mod N. When a replica is assigned partition p it replays changelog partition p mod N to
its end (from its store's checkpoint, consumer.state.sent) before processing p, so the previous
owner's sends, and its intents without an outcome (a crash between the intent and the outcome), are
known across rebalances and restarts; those intents are settled by asking Twilio
(consumer.service.exchange) before anything is sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from consumer.errors import KafkaError
from consumer.kafka.clients import ConsumerLike, KafkaClients, ProducerLike
from consumer.kafka.errors import kafka_error
from consumer.kafka.reports import on_loop
from consumer.kafka.topics import ensure_topic
from consumer.state.ledger import LedgerEntry, decode_entry, encode_entry

log = logging.getLogger(__name__)

Apply = Callable[[int, int, LedgerEntry], None]  # (slot, offset, entry)


@dataclass
class Replayed:
    """What a replay read: each slot's end, the slots read from the beginning, what is left unread."""

    ends: dict[int, int] = field(default_factory=dict)
    rebuilt: set[int] = field(default_factory=set)
    remaining: dict[int, int] = field(default_factory=dict)  # slot -> records left (empty when done)
    read_by_slot: dict[int, int] = field(default_factory=dict)

    @property
    def read(self) -> int:
        return sum(self.read_by_slot.values())


Progress = Callable[[Replayed], None]

#: How long an entry off the send's path (a `sent` outcome) may wait for the next write to share its
#: produce request: at 1,000 events/s a write that goes alone costs about 135 us of this process's CPU
#: (a request and its answer, with their wake-ups) and a request at the broker; batched, about 6 us.
DEFER_S = 0.005
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
TOPIC_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": str(DEFAULT_RETENTION_MS)}


class Changelog:
    """Replay changelog partitions to their end; write entries, reporting Kafka's acknowledgement."""

    def __init__(self, clients: KafkaClients, producer: ProducerLike, topic: str, partitions: int) -> None:
        self.clients = clients
        self.producer = producer
        self.topic = topic
        self.partitions = partitions
        # Told (on the loop) of every entry Kafka acknowledged, with its partition and offset.
        self.on_written: Callable[[int, int], None] = lambda _slot, _offset: None
        self._deferred: list[tuple[LedgerEntry, int, Callable[[KafkaError | None], None]]] = []
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def open(cls, clients: KafkaClients, producer: ProducerLike, topic: str, sources: list[str]) -> Changelog:
        """The changelog of `sources`, creating the topic if missing (blocking: call off the loop)."""
        partitions = ensure_topic(clients.admin(), topic, like=sources, config=TOPIC_CONFIG)
        return cls(clients, producer, topic, partitions)

    def slot(self, source_partition: int) -> int:
        """The changelog partition that records sends caused by `source_partition`."""
        return source_partition % self.partitions

    def replay(
        self, starts: dict[int, int | None], apply: Apply, *, stall_s: float = 60.0,
        progress: Progress | None = None, on_rebuild: Callable[[int], None] = lambda _slot: None,
    ) -> Replayed:  # fmt: skip
        """Read each slot from its start offset (None: the beginning) to its end, calling `apply` for
        each entry in order (blocking). A start Kafka no longer has (deleted by retention, or beyond the
        end: the topic was made anew) reads from the beginning instead, and says so. It gives up only
        when `stall_s` pass without a record. `on_rebuild(slot)` runs first for each slot read from the
        beginning."""
        result = Replayed()
        if not starts:
            return result
        reader = self.clients.consumer({
            "group.id": f"kafka-twilio-restore-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        })  # fmt: skip
        try:
            assign = []
            for slot, start in sorted(starts.items()):
                low, high = reader.get_watermark_offsets(TopicPartition(self.topic, slot), timeout=10)
                result.ends[slot] = high
                begin = start if start is not None and low <= start <= high else None
                if begin is None:
                    result.rebuilt.add(slot)
                    if start is not None:
                        log.warning("ledger checkpoint %d of [%d] is not in the changelog (%d to %d): "
                                    "rebuilding from the beginning", start, slot, low, high)  # fmt: skip
                    on_rebuild(slot)
                if (begin if begin is not None else low) < high:
                    first = OFFSET_BEGINNING if begin is None else begin
                    assign.append(TopicPartition(self.topic, slot, first))
                    result.remaining[slot] = high - (begin if begin is not None else low)
            if assign:
                reader.assign(assign)
                self._read_to_end(reader, result, apply, stall_s, progress)
            if result.remaining:
                log.warning("de-duplication state incomplete: changelog %s not read to its end "
                            "(stalled %.0f s)", sorted(result.remaining), stall_s)  # fmt: skip
        finally:
            reader.close()
        return result

    def _read_to_end(
        self, reader: ConsumerLike, result: Replayed, apply: Apply, stall_s: float, progress: Progress | None
    ) -> None:
        ends, remaining = result.ends, result.remaining
        last_record = time.monotonic()
        while remaining and time.monotonic() - last_record < stall_s:
            batch = reader.consume(1000, 0.1)
            if batch:
                last_record = time.monotonic()
            for msg in batch:
                slot, offset, key, value = msg.partition(), msg.offset(), msg.key(), msg.value()
                if slot is None or slot not in remaining:
                    continue
                if msg.error() is None and key is not None and value is not None and offset is not None:
                    entry = decode_entry(key, value)
                    if entry is not None:
                        apply(slot, offset, entry)
                    result.read_by_slot[slot] = result.read_by_slot.get(slot, 0) + 1
                if msg.error() is not None or (offset is not None and offset + 1 >= ends[slot]):
                    del remaining[slot]
                elif offset is not None:
                    remaining[slot] = ends[slot] - offset - 1
            if progress is not None:
                progress(result)

    def write(
        self, entry: LedgerEntry, source_partition: int, on_delivery: Callable[[KafkaError | None], None],
        *, defer: bool = False,
    ) -> None:  # fmt: skip
        """Write `entry`; `on_delivery` runs once Kafka acknowledged (None) or refused it. A deferred
        entry (on the loop) is produced with the next write that is not, or after DEFER_S."""
        if defer and (loop := asyncio._get_running_loop()) is not None:
            self._deferred.append((entry, source_partition, on_delivery))
            if self._timer is None:
                self._timer = loop.call_later(DEFER_S, self.flush_deferred)
            return
        if self._deferred:
            self.flush_deferred()  # first: they ride in this write's request
        self._produce(entry, source_partition, on_delivery)

    def flush_deferred(self) -> None:
        """Produce the deferred entries now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deferred, self._deferred = self._deferred, []
        for entry, source_partition, on_delivery in deferred:
            self._produce(entry, source_partition, on_delivery)

    def _produce(
        self, entry: LedgerEntry, source_partition: int, on_delivery: Callable[[KafkaError | None], None]
    ) -> None:
        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                self.on_written(msg.partition(), msg.offset())
            on_delivery(None if err is None else kafka_error(err, f"ledger write to {self.topic!r} failed"))

        try:
            self.producer.produce(
                self.topic, key=entry.key.encode(), value=encode_entry(entry),
                partition=self.slot(source_partition), on_delivery=on_loop(delivered),
            )  # fmt: skip
        except (BufferError, KafkaException) as exc:
            # Refused before queueing (queue full, broker gone): the caller must still hear of it once.
            on_delivery(kafka_error(exc, f"ledger write to {self.topic!r} refused"))
