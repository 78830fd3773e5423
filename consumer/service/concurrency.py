"""The concurrency gate: how many Twilio requests may be in flight, a limit that can move while tasks wait."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class ConcurrencyGate:
    """An asyncio semaphore whose limit can change while tasks wait; waiters are served in order.

    Lowering the limit never interrupts work in flight: it only holds new entries until enough
    slots are released. Raising it wakes as many waiters as now fit.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self._limit = limit
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"limit must be >= 0, got {value}")
        self._limit = value
        self._wake()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        """Wait for a slot, behind anyone already waiting."""
        if not self._waiters and self._in_flight < self._limit:
            self._in_flight += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # The slot was handed over just before the cancellation landed: pass it on.
                self._in_flight -= 1
                self._wake()
            elif future in self._waiters:  # _wake() may already have dropped it as done
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give a slot back."""
        if self._in_flight <= 0:
            raise RuntimeError("ConcurrencyGate.release() called more times than acquire()")
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            future = self._waiters.popleft()
            if not future.done():
                self._in_flight += 1
                future.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
