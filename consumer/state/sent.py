"""What this replica knows about past sends of its partitions: the de-duplication ledger and the
frequency-cap counts, both in the state store, restored from the changelog and kept current as it sends.

Restoring a changelog partition (a slot) reads it from the store's checkpoint when the store has one
Kafka still holds, else from the beginning (a fresh pod, an emptyDir, a checkpoint older than the
topic's retention). Every entry this replica writes is in the store before it is produced, so the
checkpoint can follow Kafka's acknowledgements: it moves to offset o + 1 when o is acknowledged and
every offset before it is reflected. An offset written by someone else (a slot shared by two source
topics) leaves a gap and stops it there, so the next restore reads from the gap: never past a record
the store has not seen. The checkpoint is written to the store by `flush` (the service calls it with
every offset commit, when a slot is let go and at close), not with every acknowledgement: a checkpoint
that lags only means a restart reads a little more of the tail, and writing one per acknowledgement
was a RocksDB write per ledger write on the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from consumer.errors import KafkaError
from consumer.state.caps import FrequencyCaps
from consumer.state.changelog import Changelog, Replayed
from consumer.state.ledger import Ledger, LedgerEntry
from consumer.state.store import LedgerStore

log = logging.getLogger(__name__)

MAX_GAPS = 100_000  # acknowledged offsets held beyond a gap; past that the checkpoint just waits
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class Restored:
    """How one slot was restored: from which offset to which, and whether to its end."""

    start: int | None  # None: from the beginning (no usable checkpoint)
    end: int
    complete: bool
    read: int = 0  # changelog records read


class SentState:
    """The ledger and the caps of the assigned partitions, written through to the changelog."""

    def __init__(
        self, changelog: Changelog, store: LedgerStore, *, cap_horizon_s: float = 0.0,
        on_progress: Callable[[int], None] = lambda _remaining: None,
        on_restored: Callable[[str, int], None] = lambda _start, _records: None,
    ) -> None:  # fmt: skip
        self.changelog = changelog
        self.store = store
        self.ledger = Ledger(store, changelog.partitions)
        self.caps = FrequencyCaps(store, cap_horizon_s)
        self.cap_horizon_s = cap_horizon_s
        self.on_progress = on_progress  # records left to restore, as the restore goes
        self.on_restored = on_restored  # (from the "beginning" or a "checkpoint", records read) per slot
        self.restoring = 0  # restores under way (readiness is false meanwhile)
        self._next: dict[int, int] = {}  # slot -> the offset its checkpoint is at (restored slots only)
        self._beyond: dict[int, set[int]] = {}  # slot -> acknowledged offsets past a gap
        self._unflushed: set[int] = set()  # slots whose checkpoint moved since the last flush
        changelog.on_written = self._written

    def slot(self, source_partition: int) -> int:
        return self.changelog.slot(source_partition)

    def read(self, source_partitions: Iterable[int], now: float | None = None) -> dict[int, Restored]:
        """Bring the store up to the changelog's end for these partitions (blocking: the Kafka thread);
        what expired by `now` is forgotten."""
        slots = {self.slot(p) for p in source_partitions}
        if not slots:
            return {}
        starts = {s: self.store.checkpoint(s) for s in slots}
        now = time.time() if now is None else now
        started = time.monotonic()
        last_report = [started]

        def apply(slot: int, _offset: int, entry: LedgerEntry) -> None:
            self.ledger.apply(slot, entry, now)
            # Every send counts against its cap for the cap's window, however long the ledger keeps it.
            if entry.sent_at > now - self.cap_horizon_s:
                self.caps.count(entry)

        def progress(replayed: Replayed) -> None:
            remaining = sum(replayed.remaining.values())
            self.on_progress(remaining)
            if time.monotonic() - last_report[0] >= PROGRESS_EVERY_S:
                last_report[0] = time.monotonic()
                log.info("restoring the ledger: %d records read, %d to go", replayed.read, remaining)

        self.restoring += 1
        try:
            replayed = self.changelog.replay(starts, apply, progress=progress, on_rebuild=self.store.wipe)
        finally:
            self.restoring -= 1
            self.on_progress(0)
        out: dict[int, Restored] = {}
        for slot in sorted(slots):
            end, complete = replayed.ends.get(slot, 0), slot not in replayed.remaining
            if complete:
                self.store.set_checkpoint(slot, end)
            start = None if slot in replayed.rebuilt else starts[slot]
            out[slot] = Restored(start, end, complete, replayed.read_by_slot.get(slot, 0))
            self.on_restored("beginning" if start is None else "checkpoint", out[slot].read)
        how = ", ".join(
            f"[{s}] {'from the start' if r.start is None else f'tail from {r.start}'} to {r.end}"
            for s, r in out.items()
        )
        log.info("ledger restored in %.1f s: %d changelog records read (%s)",
                 time.monotonic() - started, replayed.read, how)  # fmt: skip
        return out

    def restore(self, restored: Mapping[int, Restored], now: float) -> None:
        """Take over what `read` restored (on the loop, before any record of those partitions)."""
        del now  # the store applied the entries as they were read
        for slot, done in restored.items():
            self.ledger.settle_restored(slot)
            if done.complete:
                self._next[slot] = done.end
                self._beyond[slot] = set()

    def write(
        self, entry: LedgerEntry, source_partition: int, on_delivery: Callable[[KafkaError | None], None],
        *, defer: bool = False,
    ) -> None:  # fmt: skip
        """Apply an entry (intent, sent, released) now and write it to the changelog; `on_delivery`
        runs when Kafka acknowledged it (None) or refused it. `defer`: the write may wait a few
        milliseconds to share a produce request (consumer.state.changelog.DEFER_S)."""
        self.ledger.remember(entry, source_partition)
        self.caps.count(entry)
        self.changelog.write(entry, source_partition, on_delivery, defer=defer)

    def _written(self, slot: int, offset: int) -> None:
        """Kafka acknowledged our entry at `offset`: move the slot's checkpoint past it if contiguous."""
        at = self._next.get(slot)
        if at is None or offset < at:
            return
        beyond = self._beyond.setdefault(slot, set())
        if offset > at:
            if len(beyond) < MAX_GAPS:
                beyond.add(offset)
            return
        at += 1
        while at in beyond:
            beyond.discard(at)
            at += 1
        self._next[slot] = at
        self._unflushed.add(slot)

    def flush(self) -> None:
        """Write the checkpoints that moved since the last flush to the store."""
        for slot in self._unflushed:
            at = self._next.get(slot)
            if at is not None:
                self.store.set_checkpoint(slot, at)
        self._unflushed.clear()

    def forget(self, released: Iterable[int], kept: Iterable[int]) -> None:
        """Let go of the slots of released partitions that no kept partition shares (their entries and
        checkpoint stay on disk, for a later assignment to read only the tail)."""
        self.flush()
        for slot in {self.slot(p) for p in released} - {self.slot(p) for p in kept}:
            self.ledger.drop(slot)
            self._next.pop(slot, None)
            self._beyond.pop(slot, None)

    def prune(self, now: float | None = None) -> int:
        """Forget entries whose window ended and cap counts past the longest cap window."""
        return self.ledger.prune(time.time() if now is None else now)

    def close(self) -> None:
        if not self.store.closed:
            self.flush()
        self.store.close()
