"""Frequency caps: sliding-window counts of sends per (cap scope, recipient). Pure: time is passed in."""

from __future__ import annotations

from collections import deque


def cap_key(scope: str, recipient_digest: str) -> str:
    """The counter of one recipient under one cap scope (the same whether counted or restored)."""
    return f"{scope}:{recipient_digest}"


class FrequencyCaps:
    """Sliding-window counts of sends per key."""

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}

    def allows(self, key: str, limit: int, window_s: float, now: float) -> bool:
        """True when fewer than `limit` sends to `key` happened in the last `window_s` seconds."""
        times = self._sent.get(key)
        if times is None:
            return limit > 0
        while times and times[0] <= now - window_s:
            times.popleft()
        if not times:
            del self._sent[key]
            return limit > 0
        return len(times) < limit

    def add(self, key: str, at: float) -> None:
        times = self._sent.setdefault(key, deque())
        # Restored entries can arrive out of order; keep the deque sorted so expiry stays O(1).
        if times and at < times[-1]:
            items = sorted([*times, at])
            times.clear()
            times.extend(items)
        else:
            times.append(at)

    def prune(self, now: float, horizon_s: float) -> int:
        """Forget recipients with no send in the last `horizon_s` (the longest cap window)."""
        stale = [k for k, times in self._sent.items() if not times or times[-1] <= now - horizon_s]
        for key in stale:
            del self._sent[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._sent)
