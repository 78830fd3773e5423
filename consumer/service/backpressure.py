"""Back-pressure (invariant 7): pause every assigned partition when too many records are unfinished.

Pausing makes librdkafka drop what it prefetched, so memory stays bounded whatever the backlog; the
partitions resume at half the limit, so they do not flap at the threshold. Partitions assigned while
paused start unpaused, so they are paused too. While Twilio is down (the breaker is open) every
partition stays paused: new records would only wait in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["pause", "resume"] | None


@dataclass
class Backpressure:
    """Whether the partitions are paused, and the next action for the number of unfinished records."""

    limit: int
    paused: bool = False
    paused_count: int = 0  # partitions assigned when last paused

    def decide(self, pending: int, assigned: int, *, hold: bool = False) -> Action:
        """The action for `pending` unfinished records over `assigned` partitions: "pause", "resume"
        or None. `hold` pauses whatever is pending (Twilio is down: more records would only wait)."""
        if (hold or pending >= self.limit) and (not self.paused or self.paused_count != assigned):
            self.paused, self.paused_count = True, assigned
            return "pause"
        if self.paused and not hold and pending <= self.limit // 2:
            self.paused = False
            return "resume"
        return None
