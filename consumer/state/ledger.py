"""The sent-message ledger: at most one send per (mapping, de-duplication key, recipient) per window.

State lives in Kafka, so no other database is needed: every accepted send is written to a compacted
changelog topic (`cleanup.policy=compact,delete`, so expired entries also age out by time). The ledger
is co-partitioned with the source topics: a send caused by source partition p is recorded in changelog
partition p mod N. When a replica is assigned partition p it restores changelog partition p mod N before
processing p, so the previous owner's sends are known across rebalances and restarts.

The residual window: between Twilio's 201 and the changelog write being acknowledged (milliseconds),
a crash loses the ledger entry while the source offset is still uncommitted, so the record is processed
again after restart and sent twice. Offsets are committed only after that acknowledgement, so a clean
shutdown or rebalance never opens the window; `kafka_twilio_ambiguous_sends_total` counts the related
case of Twilio failing after the request was written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

log = logging.getLogger(__name__)

DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class LedgerEntry:
    """What the changelog remembers about one send."""

    key: str
    sent_at: float  # epoch seconds
    expires_at: float  # epoch seconds; after this the key may be sent again
    recipient: str  # a hash of the recipient, never the number itself (used by frequency caps)
    mapping_id: str
    cap_scope: str = ""  # the frequency-cap scope this send counts against ("" when uncapped)


def ledger_key(mapping_id: str, dedup_key: str, recipient: str) -> str:
    """A fixed-size key that carries no personal data."""
    digest = hashlib.blake2b(f"{mapping_id}\x1f{dedup_key}\x1f{recipient}".encode(), digest_size=16)
    return digest.hexdigest()


def recipient_hash(recipient: str) -> str:
    return hashlib.blake2b(recipient.encode(), digest_size=12).hexdigest()


def encode_entry(entry: LedgerEntry) -> bytes:
    return json.dumps(
        {
            "at": entry.sent_at,
            "exp": entry.expires_at,
            "r": entry.recipient,
            "m": entry.mapping_id,
            "c": entry.cap_scope,
        },
        separators=(",", ":"),
    ).encode()


def decode_entry(key: bytes, value: bytes) -> LedgerEntry | None:
    """Parse a changelog record; None for tombstones and records this version cannot read."""
    try:
        data = json.loads(value)
        return LedgerEntry(
            key.decode(),
            float(data["at"]),
            float(data["exp"]),
            str(data["r"]),
            str(data["m"]),
            str(data.get("c", "")),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


class Ledger:
    """In-memory view of the changelog for the partitions this replica owns.

    Memory is bounded (invariant 7): an entry is a key and an expiry time (about 200 bytes), expired
    entries are pruned oldest first, and beyond `max_entries` the oldest live entries are evicted
    early and counted in `evictions` (the de-duplication window is then shorter than configured for
    those keys; `kafka_twilio_ledger_evictions_total` says when that happens).
    """

    def __init__(self, partitions: int, max_entries: int = 1_000_000) -> None:
        self.partitions = partitions
        self.max_entries = max_entries
        self.evictions = 0
        self._tables: dict[int, dict[str, float]] = {}  # slot -> key -> expires_at
        # Insertion order, for pruning and eviction oldest first. Entries of dropped slots or
        # re-remembered keys stay here until they reach the front, where they are skipped.
        self._order: deque[tuple[int, str]] = deque()
        self._size = 0
        self._claimed: set[str] = set()  # sends in progress (not yet in the changelog)

    def slot(self, source_partition: int) -> int:
        return source_partition % self.partitions

    def is_sent(self, key: str, source_partition: int, now: float) -> bool:
        table = self._tables.get(self.slot(source_partition))
        expires = table.get(key) if table is not None else None
        return expires is not None and expires > now

    def claim(self, key: str, source_partition: int, now: float) -> bool:
        """Reserve a key before sending; False when it was sent within its window or is being sent now."""
        if key in self._claimed or self.is_sent(key, source_partition, now):
            return False
        self._claimed.add(key)
        return True

    def release(self, key: str) -> None:
        """The send did not happen (skipped, failed): the key may be tried again later."""
        self._claimed.discard(key)

    def remember(self, entry: LedgerEntry, source_partition: int) -> None:
        self._claimed.discard(entry.key)
        self._put(self.slot(source_partition), entry.key, entry.expires_at)

    def load(self, slot: int, entries: Iterable[LedgerEntry], now: float) -> int:
        """Apply restored changelog entries (in changelog order: a later one replaces an earlier)."""
        count = 0
        for entry in entries:
            if entry.expires_at > now:
                self._put(slot, entry.key, entry.expires_at)
                count += 1
        return count

    def _put(self, slot: int, key: str, expires_at: float) -> None:
        table = self._tables.setdefault(slot, {})
        if key not in table:
            self._size += 1
        table[key] = expires_at
        self._order.append((slot, key))
        while self._size > self.max_entries and self._pop_oldest(None):
            self.evictions += 1

    def _pop_oldest(self, expired_before: float | None) -> bool:
        """Remove the oldest live entry (only if it expired before `expired_before`, when given)."""
        while self._order:
            slot, key = self._order[0]
            table = self._tables.get(slot)
            expires = table.get(key) if table is not None else None
            if expires is None:
                self._order.popleft()  # dropped slot, or already removed
                continue
            if expired_before is not None and expires > expired_before:
                return False
            self._order.popleft()
            assert table is not None
            del table[key]
            self._size -= 1
            return True
        return False

    def drop(self, slot: int) -> None:
        table = self._tables.pop(slot, None)
        if table is not None:
            self._size -= len(table)

    def prune(self, now: float) -> int:
        """Remove entries whose window ended, oldest first. It stops at the oldest live entry, so a
        long window ahead of short ones delays their removal (never past `max_entries`)."""
        removed = 0
        while self._pop_oldest(now):
            removed += 1
        return removed

    def __len__(self) -> int:
        return self._size


class DedupStore:
    """The Kafka edge of the ledger: restore on assignment, write after each accepted send."""

    def __init__(
        self,
        client_config: dict[str, Any],
        producer: Producer,
        topic: str,
        partitions: int,
        *,
        max_entries: int = 1_000_000,
    ) -> None:
        self.client_config = client_config
        self.producer = producer
        self.topic = topic
        self.ledger = Ledger(partitions, max_entries)

    @staticmethod
    def ensure_topic(client_config: dict[str, Any], topic: str, source_topics: list[str]) -> int:
        """Create the changelog (compacted, partitioned like the widest source topic) if missing;
        return its partition count."""
        admin = AdminClient(client_config)
        meta = admin.list_topics(timeout=30)
        if topic in meta.topics and meta.topics[topic].partitions:
            return len(meta.topics[topic].partitions)
        widest = max((len(meta.topics[t].partitions) for t in source_topics if t in meta.topics), default=1)
        config = {"cleanup.policy": "compact,delete", "retention.ms": str(DEFAULT_RETENTION_MS)}
        futures = admin.create_topics([NewTopic(topic, widest, -1, config=config)], request_timeout=30)
        try:
            futures[topic].result(timeout=30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        return widest

    def read(self, source_partitions: Iterable[int], timeout_s: float = 60.0) -> dict[int, list[LedgerEntry]]:
        """Read the changelog partitions behind these source partitions to their end (blocking).

        Returns entries per changelog partition; `Ledger.load` applies them on the event loop.
        """
        slots = sorted({self.ledger.slot(p) for p in source_partitions})
        out: dict[int, list[LedgerEntry]] = {s: [] for s in slots}
        if not slots:
            return out
        reader = Consumer(
            {
                **self.client_config,
                "group.id": f"kafka-twilio-restore-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            ends: dict[int, int] = {}
            for slot in slots:
                low, high = reader.get_watermark_offsets(TopicPartition(self.topic, slot), timeout=10)
                if high > low:
                    ends[slot] = high
            if not ends:
                return out
            reader.assign([TopicPartition(self.topic, s, OFFSET_BEGINNING) for s in ends])
            deadline = time.monotonic() + timeout_s
            while ends and time.monotonic() < deadline:
                for msg in reader.consume(1000, 0.1):
                    part, offset, key, value = msg.partition(), msg.offset(), msg.key(), msg.value()
                    if part is None:
                        continue
                    slot = part
                    if msg.error() is None and key is not None and value is not None:
                        entry = decode_entry(key, value)
                        if entry is not None:
                            out[slot].append(entry)
                    if slot in ends and (
                        msg.error() is not None or (offset is not None and offset + 1 >= ends[slot])
                    ):
                        del ends[slot]
            if ends:
                log.warning(
                    "de-duplication state incomplete: changelog not read to its end in %.0f s", timeout_s
                )
        finally:
            reader.close()
        return out

    def record(
        self, entry: LedgerEntry, source_partition: int, on_delivery: Callable[[Exception | None], None]
    ) -> None:
        """Remember a send now and write it to the changelog; `on_delivery` runs when Kafka acknowledged."""
        self.ledger.remember(entry, source_partition)

        def delivered(err: object, _msg: object) -> None:
            on_delivery(None if err is None else RuntimeError(str(err)))

        try:
            self.producer.produce(
                self.topic,
                key=entry.key.encode(),
                value=encode_entry(entry),
                partition=self.ledger.slot(source_partition),
                on_delivery=delivered,
            )
        except (BufferError, KafkaException) as exc:
            # Refused before queueing (queue full, broker gone): the caller must still hear of it once.
            on_delivery(RuntimeError(f"ledger write to {self.topic!r} refused: {exc}"))
