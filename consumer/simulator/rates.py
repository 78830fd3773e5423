"""What each sender was asked to send, and how fast: the per-sender rate Twilio would see.

Twilio paces every sender on its own queue; a consumer group whose replicas together exceed a
sender's rate grows that queue. The simulator measures what arrived per sender so a test can check
the group's total, whichever replica sent what. Pure: arrival times are passed in.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SenderRate:
    """Arrivals of one sender: totals and the busiest window."""

    messages: int
    segments: int
    first_at: float
    last_at: float
    peak_segments: int  # the most segments that arrived within any `window_s`
    window_s: float

    @property
    def peak_per_s(self) -> float:
        return self.peak_segments / self.window_s


@dataclass
class SenderRates:
    """(loop time, segments) of every accepted message, by sender (From or MessagingServiceSid)."""

    arrivals: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    def record(self, sender: str, at: float, segments: int) -> None:
        self.arrivals.setdefault(sender, []).append((at, max(1, segments)))

    def clear(self) -> None:
        self.arrivals.clear()

    def of(self, sender: str, window_s: float) -> SenderRate | None:
        """The sender's arrivals, with the most segments in any window of `window_s` seconds."""
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        times = sorted(self.arrivals.get(sender, ()))
        if not times:
            return None
        return SenderRate(
            len(times), sum(s for _, s in times), times[0][0], times[-1][0], peak_in_window(times, window_s),
            window_s,
        )  # fmt: skip


def peak_in_window(arrivals: list[tuple[float, int]], window_s: float) -> int:
    """The most segments arriving within any half-open window [t, t + window_s), `arrivals` sorted."""
    starts = [t for t, _ in arrivals]
    cumulative = [0]
    for _, segments in arrivals:
        cumulative.append(cumulative[-1] + segments)
    # The busiest window can be taken to start at an arrival.
    return max(cumulative[bisect_left(starts, t + window_s)] - cumulative[i] for i, t in enumerate(starts))
