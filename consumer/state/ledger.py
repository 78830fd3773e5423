"""The sent ledger: at most one send per (mapping, de-duplication key, recipient) per window.

This module is the ledger's rules and its records; `consumer.state.store` keeps the entries on disk,
`consumer.state.changelog` in a compacted Kafka topic, their source of truth, and `consumer.state.sent`
restores the store and the frequency-cap counts from it. Keys and recipients are hashed: the ledger
holds no phone number.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from consumer.state.store import LedgerStore, Value

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


class Ledger:
    """The ledger of the partitions this replica owns, kept in the state store (on disk).

    Memory holds only the sends in progress and the intents restored without an outcome; every entry
    stays on disk until its window ends (invariant 7: memory is bounded whatever the volume).
    """

    def __init__(self, store: LedgerStore, partitions: int) -> None:
        self.store = store
        self.partitions = partitions
        self._claimed: set[str] = set()  # sends in progress (not yet in the changelog)
        self._in_doubt: dict[int, set[str]] = {}  # slot -> keys restored as intents, not yet settled
        self.sids = AttributedSids(store)  # SIDs attributed to a send (reconciliation skips them)

    @property
    def restored_in_doubt(self) -> set[str]:
        return set().union(*self._in_doubt.values())

    def slot(self, source_partition: int) -> int:
        return source_partition % self.partitions

    def _live(self, key: str, source_partition: int, now: float) -> Value | None:
        value = self.store.get(self.slot(source_partition), key)
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
        slot = self.slot(source_partition)
        self.apply(slot, entry)
        in_doubt = self._in_doubt.get(slot)
        if in_doubt is not None:
            in_doubt.discard(entry.key)

    def apply(self, slot: int, entry: LedgerEntry, now: float | None = None) -> None:
        """Store an entry (a released one, or one expired by `now`, forgets its key)."""
        if entry.state == RELEASED or (now is not None and entry.expires_at <= now):
            self.store.put(slot, entry.key, None)
        else:
            intent_at = entry.sent_at if entry.state == INTENT else 0.0
            self.store.put(slot, entry.key, (entry.expires_at, intent_at, entry.sid))

    def load(self, slot: int, entries: Iterable[LedgerEntry], now: float) -> int:
        """Apply restored changelog entries (in changelog order: a later one replaces an earlier)."""
        count = 0
        for entry in entries:
            self.apply(slot, entry, now)
            count += entry.state != RELEASED and entry.expires_at > now
        self.settle_restored(slot)
        return count

    def settle_restored(self, slot: int) -> None:
        """After a restore: the slot's intents are in doubt (nothing of the slot is being sent yet)."""
        self._in_doubt[slot] = self.store.intents(slot)

    def drop(self, slot: int) -> None:
        """The slot is no longer this replica's: forget what memory holds of it (the disk keeps it, with
        its checkpoint, so a later assignment reads only the changelog's tail)."""
        self._in_doubt.pop(slot, None)

    def prune(self, now: float) -> int:
        """Remove entries whose window ended, and cap counts older than their horizon."""
        removed = self.store.expire(now)
        for slot, key in removed:
            in_doubt = self._in_doubt.get(slot)
            if in_doubt is not None:
                in_doubt.discard(key)
        return len(removed)

    def __len__(self) -> int:
        return len(self.store)


class AttributedSids(Collection[str]):
    """The SIDs the ledger attributes to a send, looked up on disk."""

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def __contains__(self, sid: object) -> bool:
        return isinstance(sid, str) and bool(sid) and self._store.has_sid(sid)

    def __iter__(self) -> Iterator[str]:
        return self._store.sids()

    def __len__(self) -> int:
        return sum(1 for _ in self._store.sids())
