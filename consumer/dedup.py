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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
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
    """In-memory view of the changelog for the partitions this replica owns."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._entries: dict[int, dict[str, LedgerEntry]] = {}
        self._claimed: set[str] = set()  # sends in progress (not yet in the changelog)

    def slot(self, source_partition: int) -> int:
        return source_partition % self.partitions

    def is_sent(self, key: str, source_partition: int, now: float) -> bool:
        entry = self._entries.get(self.slot(source_partition), {}).get(key)
        return entry is not None and entry.expires_at > now

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
        self._entries.setdefault(self.slot(source_partition), {})[entry.key] = entry

    def load(self, slot: int, entries: Iterable[LedgerEntry], now: float) -> int:
        table = self._entries.setdefault(slot, {})
        count = 0
        for entry in entries:
            if entry.expires_at > now:
                table[entry.key] = entry
                count += 1
            else:
                table.pop(entry.key, None)
        return count

    def drop(self, slot: int) -> None:
        self._entries.pop(slot, None)

    def prune(self, now: float) -> int:
        removed = 0
        for table in self._entries.values():
            expired = [k for k, e in table.items() if e.expires_at <= now]
            for k in expired:
                del table[k]
            removed += len(expired)
        return removed

    def entries(self) -> Iterable[LedgerEntry]:
        for table in self._entries.values():
            yield from table.values()

    def __len__(self) -> int:
        return sum(len(t) for t in self._entries.values())


class DedupStore:
    """The Kafka edge of the ledger: restore on assignment, write after each accepted send."""

    def __init__(
        self, client_config: dict[str, str], producer: Producer, topic: str, partitions: int
    ) -> None:
        self.client_config = client_config
        self.producer = producer
        self.topic = topic
        self.ledger = Ledger(partitions)

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

        self.producer.produce(
            self.topic,
            key=entry.key.encode(),
            value=encode_entry(entry),
            partition=self.ledger.slot(source_partition),
            on_delivery=delivered,
        )
