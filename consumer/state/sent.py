"""What this replica knows about past sends of its partitions: the de-duplication ledger and the
frequency-cap counts, both restored from the changelog in one pass and kept current as it sends."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from consumer.errors import KafkaError
from consumer.state.caps import FrequencyCaps, cap_key
from consumer.state.changelog import Changelog
from consumer.state.ledger import SENT, Ledger, LedgerEntry


class SentState:
    """The ledger and the caps of the assigned partitions, written through to the changelog."""

    def __init__(self, changelog: Changelog, *, max_entries: int, cap_horizon_s: float = 0.0) -> None:
        self.changelog = changelog
        self.ledger = Ledger(changelog.partitions, max_entries)
        self.caps = FrequencyCaps()
        self.cap_horizon_s = cap_horizon_s  # the longest cap window: older counts can be forgotten
        self._evictions_reported = 0

    def slot(self, source_partition: int) -> int:
        return self.changelog.slot(source_partition)

    def read(self, source_partitions: Iterable[int]) -> dict[int, list[LedgerEntry]]:
        """Read the changelog behind these partitions (blocking: on the Kafka thread)."""
        return self.changelog.read({self.slot(p) for p in source_partitions})

    def restore(self, restored: Mapping[int, list[LedgerEntry]], now: float) -> None:
        """Apply what `read` returned (on the loop, before any record of those partitions)."""
        for slot, entries in restored.items():
            self.ledger.load(slot, entries, now)
            for entry in entries:
                # Only what was sent counts against a cap: an intent may never have left.
                if entry.cap_scope and entry.state == SENT:
                    self.caps.add(cap_key(entry.cap_scope, entry.recipient), entry.sent_at)

    def write(
        self, entry: LedgerEntry, source_partition: int, on_delivery: Callable[[KafkaError | None], None]
    ) -> None:
        """Apply an entry (intent, sent, released) now and write it to the changelog; `on_delivery`
        runs when Kafka acknowledged it (None) or refused it."""
        self.ledger.remember(entry, source_partition)
        self.changelog.write(entry, source_partition, on_delivery)

    def forget(self, released: Iterable[int], kept: Iterable[int]) -> None:
        """Drop the ledger slots of released partitions that no kept partition shares."""
        for slot in {self.slot(p) for p in released} - {self.slot(p) for p in kept}:
            self.ledger.drop(slot)

    def prune(self, now: float | None = None) -> int:
        """Forget expired entries and old cap counts; return the early evictions since the last call."""
        now = time.time() if now is None else now
        self.ledger.prune(now)
        self.caps.prune(now, self.cap_horizon_s)
        new = self.ledger.evictions - self._evictions_reported
        self._evictions_reported = self.ledger.evictions
        return new
