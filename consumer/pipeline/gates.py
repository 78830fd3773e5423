"""Gates between render and send: quiet hours and frequency caps. Pure: time is passed in."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def quiet_until(now: datetime, tz: ZoneInfo, start: time, end: time) -> datetime | None:
    """When `now` falls in the quiet period [start, end) local time, return its end (UTC); else None.

    A period whose start is after its end wraps midnight (21:00-08:00), the usual case.
    """
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if start == end:
        return None
    wraps = start > end
    inside = (t >= start or t < end) if wraps else (start <= t < end)
    if not inside:
        return None
    end_day = local.date()
    if wraps and t >= start:
        end_day += timedelta(days=1)
    # Build the wall-clock end in the zone; fold=0 picks the first of ambiguous DST times.
    local_end = datetime.combine(end_day, end, tzinfo=tz)
    return local_end.astimezone(UTC)


class FrequencyCaps:
    """Sliding-window counts of sends per (cap scope, recipient)."""

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
