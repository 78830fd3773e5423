"""The sent ledger: at most one send per (mapping, de-duplication key, recipient) per window.

This module is the in-memory table and its records; `consumer.state.changelog` keeps it in a
compacted Kafka topic, its source of truth, and `consumer.state.sent` restores both the table and
the frequency-cap counts from it. Keys and recipients are hashed: the ledger holds no phone number.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

#: An entry's state: an intent is written (and acknowledged) before the request; `sent` replaces it
#: after Twilio's 201 (or when reconciliation found the message at Twilio); `released` clears an
#: intent whose send surely did not happen (dead-lettered, skipped), so the key may be sent later.
INTENT, SENT, RELEASED = "intent", "sent", "released"


@dataclass(frozen=True)
class LedgerEntry:
    """What the changelog remembers about one send (or one send about to happen)."""

    key: str
    sent_at: float  # epoch seconds: when sent, or for an intent when the request was about to go
    expires_at: float  # epoch seconds; after this the key may be sent again
    recipient: str  # a hash of the recipient, never the number itself (used by frequency caps)
    mapping_id: str
    cap_scope: str = ""  # the frequency-cap scope this send counts against ("" when uncapped)
    state: str = SENT
    sid: str = ""  # Twilio's message SID, once known
    digest: str = ""  # of the exact request (all form parameters), to tell a changed re-render
    fingerprint: str = ""  # of the content alone (body or template, media)


@dataclass(frozen=True)
class Claim:
    """What the ledger says about a key about to be sent.

    `new`: never sent in its window (now reserved); `sent`: sent within its window; `busy`: being sent
    right now by this replica; `in_doubt`: an intent without an outcome (a crash or an unanswered
    request since `intent_at`), now reserved: ask Twilio before sending.
    """

    kind: str
    intent_at: float = 0.0

    @property
    def reserved(self) -> bool:
        return self.kind in ("new", "in_doubt")


def ledger_key(mapping_id: str, dedup_key: str, recipient: str) -> str:
    """A fixed-size key that carries no personal data."""
    digest = hashlib.blake2b(f"{mapping_id}\x1f{dedup_key}\x1f{recipient}".encode(), digest_size=16)
    return digest.hexdigest()


def recipient_hash(recipient: str) -> str:
    return hashlib.blake2b(recipient.encode(), digest_size=12).hexdigest()


CONTENT_PARAMS = frozenset(("Body", "ContentSid", "ContentVariables", "MediaUrl"))


def request_digests(params: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """(digest of every parameter, fingerprint of the content alone) of a Twilio request."""
    # Joined with unit and record separators (no real parameter holds them): cheaper than JSON.
    pairs = [f"{k}\x1f{v}" for k, v in params]
    content = [p for p in pairs if p.partition("\x1f")[0] in CONTENT_PARAMS]
    digest = hashlib.blake2b("\x1e".join(pairs).encode(), digest_size=8).hexdigest()
    return digest, hashlib.blake2b("\x1e".join(content).encode(), digest_size=4).hexdigest()


def encode_entry(entry: LedgerEntry) -> bytes:
    """The changelog value: compact JSON. Two are written per send, so it is built by hand (a third of
    json.dumps's cost): the hashes, SIDs and states are hex or fixed words; only the mapping id and cap
    scope can hold characters JSON must escape."""
    extra = "".join(f',"{k}":"{v}"' for k, v in (("sid", entry.sid), ("d", entry.digest),
                                                  ("f", entry.fingerprint)) if v)  # fmt: skip
    return (
        f'{{"at":{float(entry.sent_at)!r},"exp":{float(entry.expires_at)!r},"r":"{entry.recipient}",'
        f'"m":{_quoted(entry.mapping_id)},"c":{_quoted(entry.cap_scope)},"s":"{entry.state}"{extra}}}'
    ).encode()


@functools.lru_cache(maxsize=1024)
def _quoted(text: str) -> str:
    return json.dumps(text)


def decode_entry(key: bytes, value: bytes) -> LedgerEntry | None:
    """Parse a changelog record; None for records this version cannot read. An entry written before
    intents existed has no state: it recorded a send."""
    try:
        data = json.loads(value)
        return LedgerEntry(
            key.decode(), float(data["at"]), float(data["exp"]), str(data["r"]), str(data["m"]),
            str(data.get("c", "")), str(data.get("s", SENT)), str(data.get("sid", "")),
            str(data.get("d", "")), str(data.get("f", "")),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


# A table value: (expires_at, intent_at, sid). intent_at is 0.0 once the send is known to have happened.
_Value = tuple[float, float, str]


class Ledger:
    """In-memory view of the changelog for the partitions this replica owns.

    Memory is bounded (invariant 7): an entry is a key, an expiry time and a SID (about 300 bytes),
    expired entries are pruned oldest first, and beyond `max_entries` the oldest live entries are
    evicted early and counted in `evictions` (the de-duplication window is then shorter than
    configured for those keys; `kafka_twilio_ledger_evictions_total` says when that happens).
    """

    def __init__(self, partitions: int, max_entries: int = 1_000_000) -> None:
        self.partitions = partitions
        self.max_entries = max_entries
        self.evictions = 0
        self._tables: dict[int, dict[str, _Value]] = {}  # slot -> key -> value
        # Insertion order, for pruning and eviction oldest first. Entries of dropped slots or
        # re-remembered keys stay here until they reach the front, where they are skipped.
        self._order: deque[tuple[int, str]] = deque()
        self._size = 0
        self._claimed: set[str] = set()  # sends in progress (not yet in the changelog)
        self.sids: set[str] = set()  # SIDs this ledger attributes to a send (reconciliation skips them)
        self.restored_in_doubt: set[str] = set()  # keys restored as intents, not yet settled

    def slot(self, source_partition: int) -> int:
        return source_partition % self.partitions

    def _live(self, key: str, source_partition: int, now: float) -> _Value | None:
        table = self._tables.get(self.slot(source_partition))
        value = table.get(key) if table is not None else None
        return value if value is not None and value[0] > now else None

    def is_sent(self, key: str, source_partition: int, now: float) -> bool:
        value = self._live(key, source_partition, now)
        return value is not None and not value[1]

    def claim(self, key: str, source_partition: int, now: float) -> Claim:
        """Reserve a key before sending, unless it was sent within its window or is being sent now."""
        if key in self._claimed:
            return Claim("busy")
        value = self._live(key, source_partition, now)
        if value is not None and not value[1]:
            return Claim("sent")
        self._claimed.add(key)
        return Claim("in_doubt", value[1]) if value is not None else Claim("new")

    def release(self, key: str) -> None:
        """The send did not happen (skipped, failed, abandoned): the key may be tried again later."""
        self._claimed.discard(key)

    def remember(self, entry: LedgerEntry, source_partition: int) -> None:
        """Apply an entry this replica writes: an intent keeps the key reserved, the others free it."""
        if entry.state != INTENT:
            self._claimed.discard(entry.key)
        self._apply(self.slot(source_partition), entry)

    def load(self, slot: int, entries: Iterable[LedgerEntry], now: float) -> int:
        """Apply restored changelog entries (in changelog order: a later one replaces an earlier)."""
        count = 0
        for entry in entries:
            if entry.expires_at > now or entry.state == RELEASED:
                self._apply(slot, entry)
                count += entry.state != RELEASED
                if entry.state == INTENT:
                    self.restored_in_doubt.add(entry.key)
        return count

    def _apply(self, slot: int, entry: LedgerEntry) -> None:
        table = self._tables.setdefault(slot, {})
        old = table.pop(entry.key, None)
        self.restored_in_doubt.discard(entry.key)
        if old is not None:
            self._size -= 1
            self.sids.discard(old[2])
        if entry.state == RELEASED:
            return
        table[entry.key] = (entry.expires_at, entry.sent_at if entry.state == INTENT else 0.0, entry.sid)
        self._size += 1
        if entry.sid:
            self.sids.add(entry.sid)
        self._order.append((slot, entry.key))
        while self._size > self.max_entries and self._pop_oldest(None):
            self.evictions += 1

    def _pop_oldest(self, expired_before: float | None) -> bool:
        """Remove the oldest live entry (only if it expired before `expired_before`, when given)."""
        while self._order:
            slot, key = self._order[0]
            table = self._tables.get(slot)
            value = table.get(key) if table is not None else None
            if value is None:
                self._order.popleft()  # dropped slot, or already removed
                continue
            if expired_before is not None and value[0] > expired_before:
                return False
            self._order.popleft()
            assert table is not None
            del table[key]
            self.sids.discard(value[2])
            self.restored_in_doubt.discard(key)
            self._size -= 1
            return True
        return False

    def drop(self, slot: int) -> None:
        table = self._tables.pop(slot, None)
        if table is not None:
            self._size -= len(table)
            self.sids.difference_update(v[2] for v in table.values())
            self.restored_in_doubt.difference_update(table)

    def prune(self, now: float) -> int:
        """Remove entries whose window ended, oldest first. It stops at the oldest live entry, so a
        long window ahead of short ones delays their removal (never past `max_entries`)."""
        removed = 0
        while self._pop_oldest(now):
            removed += 1
        return removed

    def __len__(self) -> int:
        return self._size
