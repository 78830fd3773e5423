"""Delivery reports: served on the event loop while writes are outstanding, and only then.

A send waits for its intent's acknowledgement, so how soon a delivery report is served is send
latency; how it is served is CPU. Measured against the minimal server (bench/bench_minimal.py at 0 ms,
the two variants alternating): a thread blocked in `producer.poll()` hands reports over at once, but
cost about 10 % of the throughput at saturation (every report crosses threads and takes the GIL from
the loop); a pump on the loop that looks every millisecond costs 5 % of a core with nothing to do.
`ReportPump` looks every millisecond (at once after serving something) only while the producer has
writes outstanding, and sleeps on an event otherwise (waking every 50 ms, for writes made off the
loop): next to nothing spent when idle, a report waits at most a millisecond.

librdkafka runs delivery callbacks on the thread that polls. Every callback the project gives the
producer is wrapped by `on_loop`, which also rings the pump's doorbell; a report served on another
thread (the final flush, on the Kafka thread) reaches the loop that produced it, the reports of one
poll together, never beside the loop's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from typing import Any

from consumer.kafka.clients import ProducerLike


def on_loop(callback: Callable[..., None]) -> Callable[..., None]:
    """`callback`, made to run on the running event loop whatever thread reports; without a running
    loop (a command, a test), it runs where it is called."""
    loop = asyncio._get_running_loop()
    if loop is None:
        return callback
    owner = threading.get_ident()
    handoff = _handoff(loop)
    handoff.due.set()  # a report is coming: the pump serves until nothing is outstanding

    def report(*args: Any) -> None:
        if threading.get_ident() == owner:
            callback(*args)
        else:
            handoff.put(callback, args)

    return report


class _Handoff:
    """Callbacks from other threads, run on `loop` in batches: one wake-up of the loop (a write to its
    self-pipe) for all the reports one producer poll serves, not one per report."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self.due = asyncio.Event()  # set when a write was handed a callback; cleared by the pump

    def put(self, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        with self.lock:
            self.items.append((callback, args))
            first = len(self.items) == 1
        if first:
            self.loop.call_soon_threadsafe(self.run)

    def run(self) -> None:
        with self.lock:
            items, self.items = self.items, []
        for callback, args in items:
            callback(*args)


_HANDOFFS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Handoff] = weakref.WeakKeyDictionary()
_last: list[_Handoff] = []  # the handoff looked up last: a process has one loop, and every write asks


def _handoff(loop: asyncio.AbstractEventLoop) -> _Handoff:
    # A WeakKeyDictionary lookup builds a weak reference each time: 3 % of the service's CPU at
    # 1,000 events/s (two ledger writes per message), where a comparison with the last loop is free.
    if _last and _last[0].loop is loop:
        return _last[0]
    handoff = _HANDOFFS.get(loop)
    if handoff is None:
        handoff = _HANDOFFS[loop] = _Handoff(loop)
    _last[:] = [handoff]
    return handoff


class ReportPump:
    """Serve `producer`'s delivery reports on the running loop (see the module docstring)."""

    def __init__(self, producer: ProducerLike, look_s: float = 0.001, idle_s: float = 0.05) -> None:
        self._producer = producer
        self._look_s = look_s
        self._idle_s = idle_s

    async def run(self) -> None:
        """Until cancelled (before the producer's final flush, which serves what is left)."""
        due = _handoff(asyncio.get_running_loop()).due
        while True:
            if len(self._producer) == 0:
                # Nothing outstanding. A write on this loop rings `due` before it produces, so it
                # cannot slip between the check above and this wait; one from another thread (a
                # restore, a command) does not ring: `idle_s` bounds how long its report waits.
                due.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._idle_s):
                        await due.wait()
                continue
            served = self._producer.poll(0)
            await asyncio.sleep(0 if served else self._look_s)
