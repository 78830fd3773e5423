"""Back-pressure (invariant 7): pause every assigned partition when too many records are unfinished.

Pausing makes librdkafka drop what it prefetched, so memory stays bounded whatever the backlog; the
partitions resume at half the limit, so they do not flap at the threshold. Partitions assigned while
paused start unpaused, so they are paused too.
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

    def decide(self, pending: int, assigned: int) -> Action:
        """ "pause", "resume" or None, for `pending` unfinished records over `assigned` partitions."""
        if pending >= self.limit and (not self.paused or self.paused_count != assigned):
            self.paused, self.paused_count = True, assigned
            return "pause"
        if self.paused and pending <= self.limit // 2:
            self.paused = False
            return "resume"
        return None
