"""The sent ledger: at most one send per (mapping, de-duplication key, recipient) per window.

This module is the in-memory table and its records; `consumer.state.changelog` keeps it in a
compacted Kafka topic, its source of truth, and `consumer.state.sent` restores both the table and
the frequency-cap counts from it. Keys and recipients are hashed: the ledger holds no phone number.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


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
