"""Progress of a long command (produce, replay) on one updating terminal line: records, rate, elapsed.

Only on a terminal: piped or redirected output stays exactly what the command prints, with no
carriage returns in it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """`update(count)` as often as you like; it redraws at most every `every_s` seconds."""

    def __init__(
        self,
        what: str,
        stream: TextIO | None = None,
        *,
        every_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool | None = None,
    ) -> None:
        self.what = what
        self.stream = sys.stderr if stream is None else stream
        self.every_s = every_s
        self.clock = clock
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = clock()
        self._drawn_at: float | None = None

    def line(self, count: int) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        return f"{self.what}: {count:,} records, {count / elapsed:,.0f}/s, {elapsed:.1f} s"

    def update(self, count: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self._drawn_at is not None and now - self._drawn_at < self.every_s:
            return
        self._drawn_at = now
        self.stream.write("\r" + self.line(count))
        self.stream.flush()

    def done(self, count: int) -> None:
        """Leave the final figures on their own line (on a terminal)."""
        if self.enabled:
            self.stream.write("\r" + self.line(count) + "\n")
            self.stream.flush()
