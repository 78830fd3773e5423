"""The ledger's local state store: RocksDB on disk (rocksdict), the changelog topic its source of truth.

Kafka Streams and quix-streams keep state the same way: an embedded store holds what the changelog
says, with the changelog offset it reflects (its checkpoint), so a restarted replica that kept its disk
reads only the changelog's tail, and one without it rebuilds from the topic. Memory stays bounded
whatever the volume (RocksDB's write buffers and block cache are capped below); the disk holds every
entry until its window ends, so the window is honoured exactly.

Writes keep RocksDB's write-ahead log: a replica killed mid-send reopens its store as it was at the
kill, so its restart reads only the changelog's tail too. (Without the log a kill would lose everything
since the last memtable flush, minutes of writes at a low rate, for a saving of about 1 µs per write
once checkpoints stopped being written per acknowledgement; measured, not taken.)

One store per replica; each changelog partition (a slot) has its own key range and checkpoint. Keys
are bytes, numbers big-endian (positive doubles sort as their bytes):

    k <slot:2> <key>               -> <expires_at:d> <intent_at:d> <sid>   a ledger entry
    s <sid>                        -> <slot:2> <key>                       SIDs attributed to a send
    i <slot:2> <key>               -> ''                                   entries that are intents
    c <cap key> 00 <sent_at:d> <key> -> <keep_until:d>                    frequency-cap counts
    e <expires_at:d> <primary key> -> ''                                   expiry index, oldest first
    m <slot:2>                     -> <offset:q>                           the slot's checkpoint
    n                              -> <entries:q>
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch

from consumer.errors import StateError

# A table value: (expires_at, intent_at, sid). intent_at is 0.0 once the send is known to have happened.
Value = tuple[float, float, str]

_D = struct.Struct(">d")
_Q = struct.Struct(">q")
_H = struct.Struct(">H")
_V = struct.Struct("<dd")
WRITE_BUFFER_BYTES = 8 << 20  # two of them at most: RocksDB's memtables
BLOCK_CACHE_BYTES = 32 << 20
WIPE_BATCH = 10_000


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    options.set_max_open_files(256)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    options.set_block_based_table_factory(table)
    return options


def _slot(slot: int) -> bytes:
    return _H.pack(slot)


class LedgerStore:
    """Ledger entries, SIDs, intents, cap counts and checkpoints of this replica's slots, on disk."""

    def __init__(self, path: Path | None) -> None:
        """Open (or create) the store at `path`; None: a temporary one, removed by `close`."""
        self._temporary = path is None
        self.path = Path(tempfile.mkdtemp(prefix="kafka-twilio-state-")) if path is None else path
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._db = Rdict(str(self.path), _options())
        except Exception as exc:  # rocksdict raises plain Exceptions (a held lock, a bad directory)
            raise StateError(
                f"cannot open the ledger's state store at {self.path}: {exc}. Give each replica a "
                "CONSUMER_STATE_DIR of its own that it may write"
            ) from exc
        self._closed = False
        # Restores write from the Kafka thread while the loop writes other partitions: the entry count
        # (read-modify-write with the batch) is kept under a lock.
        self._lock = threading.Lock()
        raw = self._db.get(b"n")
        self._count = _Q.unpack(raw)[0] if raw else 0

    def close(self) -> None:
        """Close the store (again: nothing); a temporary one is removed."""
        if self._closed:
            return
        self._closed = True
        self._db.close()
        if self._temporary:
            shutil.rmtree(self.path, ignore_errors=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return self._count

    # -- entries -----------------------------------------------------------------------------------

    def get(self, slot: int, key: str) -> Value | None:
        raw = self._db.get(b"k" + _slot(slot) + key.encode())
        return None if raw is None else _value(raw)

    def put(self, slot: int, key: str, value: Value | None) -> None:
        """Store `value` for `key` (None: forget it), with its indexes, in one atomic write."""
        primary = b"k" + _slot(slot) + key.encode()
        batch = WriteBatch(raw_mode=True)
        with self._lock:
            raw = self._db.get(primary)
            if raw is not None:
                self._unindex(batch, primary, _value(raw))
                self._count -= 1
            if value is not None:
                expires_at, intent_at, sid = value
                batch.put(primary, _V.pack(expires_at, intent_at) + sid.encode())
                batch.put(b"e" + _D.pack(expires_at) + primary, b"")
                if sid:
                    batch.put(b"s" + sid.encode(), primary[1:])
                if intent_at:
                    batch.put(b"i" + primary[1:], b"")
                self._count += 1
            batch.put(b"n", _Q.pack(self._count))
            self._db.write(batch)

    def _unindex(self, batch: WriteBatch, primary: bytes, old: Value) -> None:
        batch.delete(primary)
        batch.delete(b"e" + _D.pack(old[0]) + primary)
        if old[2]:
            batch.delete(b"s" + old[2].encode())
        if old[1]:
            batch.delete(b"i" + primary[1:])

    def has_sid(self, sid: str) -> bool:
        return self._db.get(b"s" + sid.encode()) is not None

    def sids(self) -> Iterator[str]:
        for key in self._keys(b"s"):
            yield key[1:].decode()

    def intents(self, slot: int) -> set[str]:
        """Keys of the slot whose entry is an intent."""
        prefix = b"i" + _slot(slot)
        return {key[len(prefix) :].decode() for key in self._keys(prefix)}

    # -- frequency-cap counts ------------------------------------------------------------------------

    def add_count(self, cap_key: str, at: float, send: str, keep_until: float) -> None:
        """Count a send at `at` against `cap_key`, kept until `keep_until`. The same send counted
        twice (restored again from the changelog) is one count: its time and key are its identity."""
        key = b"c" + cap_key.encode() + b"\x00" + _D.pack(at) + send.encode()
        batch = WriteBatch(raw_mode=True)
        batch.put(key, _D.pack(keep_until))  # the index entry that may remove it (a later one may not)
        batch.put(b"e" + _D.pack(keep_until) + key, b"")
        self._db.write(batch)

    def count_since(self, cap_key: str, since: float, limit: int) -> int:
        """Sends counted against `cap_key` after `since` (counting stops at `limit`)."""
        prefix = b"c" + cap_key.encode() + b"\x00"
        start = prefix + _D.pack(max(0.0, since))
        count = 0
        for key in self._keys(prefix, start=start):
            if _D.unpack_from(key, len(prefix))[0] > since:
                count += 1
                if count >= limit:
                    break
        return count

    # -- expiry, checkpoints, slots -------------------------------------------------------------------

    def expire(self, now: float, limit: int = 200_000) -> list[tuple[int, str]]:
        """Remove what expired by `now` (at most `limit`, oldest first); return the (slot, key) of the
        ledger entries removed."""
        removed: list[tuple[int, str]] = []
        batch = WriteBatch(raw_mode=True)
        with self._lock:
            self._expire(batch, now, limit, removed)
        return removed

    def _expire(self, batch: WriteBatch, now: float, limit: int, removed: list[tuple[int, str]]) -> None:
        for done, index in enumerate(self._keys(b"e", end=b"e" + _D.pack(now) + b"\xff"), 1):
            primary, expires = index[9:], index[1:9]
            batch.delete(index)
            raw = self._db.get(primary)
            if raw is None:
                continue
            if primary[:1] == b"k" and raw[:8] == _V.pack(_D.unpack(expires)[0], 0)[:8]:
                self._unindex(batch, primary, _value(raw))
                self._count -= 1
                removed.append((_H.unpack(primary[1:3])[0], primary[3:].decode()))
            elif primary[:1] == b"c" and raw == expires:
                batch.delete(primary)
            if done >= limit:
                break
        batch.put(b"n", _Q.pack(self._count))
        self._db.write(batch)

    def checkpoint(self, slot: int) -> int | None:
        """The changelog offset the slot reflects every record before, or None when never read."""
        raw = self._db.get(b"m" + _slot(slot))
        return None if raw is None else int(_Q.unpack(raw)[0])

    def set_checkpoint(self, slot: int, offset: int) -> None:
        self._db.put(b"m" + _slot(slot), _Q.pack(offset))

    def wipe(self, slot: int) -> None:
        """Forget the slot (its changelog is to be read from the beginning)."""
        prefix = b"k" + _slot(slot)
        with self._lock:
            self._db.delete(b"m" + _slot(slot))  # first: a crash half-way leaves a slot to rebuild
            batch, pending = WriteBatch(raw_mode=True), 0
            for primary in self._keys(prefix):
                raw = self._db.get(primary)
                if raw is not None:
                    self._unindex(batch, primary, _value(raw))
                    self._count -= 1
                    pending += 1
                if pending >= WIPE_BATCH:  # a slot can hold millions: write in bounded batches
                    self._db.write(batch)
                    batch, pending = WriteBatch(raw_mode=True), 0
            batch.put(b"n", _Q.pack(self._count))
            self._db.write(batch)

    def flush(self) -> None:
        """Write the memtables out to files (their size on disk is then the store's)."""
        self._db.flush()

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def _keys(
        self, prefix: bytes, *, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[bytes]:
        options = ReadOptions()
        options.set_iterate_upper_bound(end if end is not None else _after(prefix))
        yield from self._db.keys(from_key=start if start is not None else prefix, read_opt=options)


def _value(raw: bytes) -> Value:
    expires_at, intent_at = _V.unpack_from(raw)
    return expires_at, intent_at, raw[16:].decode()


def _after(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix`."""
    head = prefix.rstrip(b"\xff")
    return head[:-1] + bytes([head[-1] + 1]) if head else b"\xff" * 16
