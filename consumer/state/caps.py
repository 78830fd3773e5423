"""Frequency caps: sliding-window counts of sends per (cap scope, recipient), kept in the state store.

Every send that counts against a cap is counted, whether or not its mapping has a de-duplication key,
and kept for the longest cap window (`horizon_s`), however long the ledger keeps the send itself.
"""

from __future__ import annotations

from consumer.state.ledger import SENT, LedgerEntry
from consumer.state.store import LedgerStore


def cap_key(scope: str, recipient_digest: str) -> str:
    """The counter of one recipient under one cap scope (the same whether counted or restored)."""
    return f"{scope}:{recipient_digest}"


class FrequencyCaps:
    """Sliding-window counts of sends per key, on disk."""

    def __init__(self, store: LedgerStore, horizon_s: float) -> None:
        self.store = store
        self.horizon_s = horizon_s  # the longest cap window: older counts are forgotten

    def allows(self, key: str, limit: int, window_s: float, now: float) -> bool:
        """True when fewer than `limit` sends to `key` happened in the last `window_s` seconds."""
        if limit <= 0:
            return False
        return self.store.count_since(key, now - window_s, limit) < limit

    def add(self, key: str, at: float, send: str = "") -> None:
        """Count a send at `at`; `send` (its ledger key) makes it one count however often it is
        counted (its write, then a restore of the same changelog record)."""
        self.store.add_count(key, at, send, keep_until=at + max(self.horizon_s, 1.0))

    def count(self, entry: LedgerEntry) -> None:
        """Count a sent ledger entry against its cap (nothing when uncapped or not a send)."""
        if entry.cap_scope and entry.state == SENT:
            self.add(cap_key(entry.cap_scope, entry.recipient), entry.sent_at, entry.key)
