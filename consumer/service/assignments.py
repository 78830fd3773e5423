"""Partition assignments: which partitions this replica owns, under which generation, and the
rebalance callbacks that hand them over.

librdkafka calls `on_assign` / `on_revoke` / `on_lost` on the Kafka thread, inside `consume()`; the
state they change lives on the event loop, so each callback does its blocking part (reading the
changelog, committing) on the Kafka thread and the rest on the loop:

- assigned: the changelog behind the new partitions is read to its end first, then applied on the
  loop before any of their records (the loop runs callbacks in order), so the ledger is complete.
- revoked: their sends get the drain grace period, ledger and dead-letter writes are acknowledged,
  their finished offsets are committed, the rest is left for the next owner.
- lost: another member may own them already, so nothing is committed; their work is dropped.

Every assignment of a partition gets a new generation: an outcome from before a revoke cannot finish
an offset of a later assignment of the same partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from consumer.kafka.offsets import OffsetTracker
from consumer.metrics import Metrics
from consumer.service.budgets import Budgets
from consumer.service.dispatcher import Dispatcher
from consumer.service.records import RecordState
from consumer.state.sent import Restored, SentState

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
Offsets = dict[TopicPartition, int]


class Assignments:
    """The partitions this replica owns; the rebalance callbacks' two halves (Kafka thread, loop)."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        tracker: OffsetTracker,
        dispatcher: Dispatcher,
        state: SentState,
        settle: Callable[[float], Awaitable[None]],
        commit: Callable[[Any, Offsets], object],
        metrics: Metrics,
        drain_grace_s: float,
        on_assigned: Callable[[], None] = lambda: None,
        budgets: Budgets | None = None,
    ) -> None:
        self.loop = loop
        self.tracker = tracker
        self.dispatcher = dispatcher
        self.state = state
        self.settle = settle
        self.commit = commit
        self.metrics = metrics
        self.drain_grace_s = drain_grace_s
        self.on_assigned = on_assigned
        self.budgets = budgets
        self.assigned: set[TopicPartition] = set()
        self._generation: dict[TopicPartition, int] = {}

    def generation(self, tp: TopicPartition) -> int:
        return self._generation.get(tp, 0)

    def owns(self, record: RecordState) -> bool:
        """True when `record` was consumed under the current assignment of its partition."""
        return record.tp in self.assigned and record.generation == self._generation.get(record.tp, 0)

    # -- the Kafka thread's half -------------------------------------------------------------------

    def on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        now = time.time()
        restored = self.state.read((p.partition for p in partitions), now)
        tps = [(p.topic, p.partition) for p in partitions]
        total = self.budgets.count() if self.budgets is not None else None
        # Applied on the loop before the new partitions' records (FIFO), so the ledger is complete.
        self.loop.call_soon_threadsafe(self.assign, tps, restored, now, total)
        self.on_assigned()
        log.info("partitions assigned", extra={"partitions": sorted(f"{t}[{p}]" for t, p in tps)})

    def on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        future = asyncio.run_coroutine_threadsafe(self.release(tps, drain_s=self.drain_grace_s), self.loop)
        try:
            offsets = future.result(timeout=self.drain_grace_s + 5)
        except Exception:  # noqa: BLE001  a stuck drain must not stop the rebalance
            log.warning("revoked partitions did not drain in time; their offsets stay uncommitted")
            return
        self.commit(consumer, offsets)

    def on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        asyncio.run_coroutine_threadsafe(self.release(tps, drain_s=None), self.loop).result(timeout=30)

    # -- the loop's half ---------------------------------------------------------------------------

    def assign(
        self, tps: list[TopicPartition], restored: dict[int, Restored], now: float,
        total: int | None = None,
    ) -> None:  # fmt: skip
        for tp in tps:
            self._generation[tp] = self._generation.get(tp, 0) + 1
            self.assigned.add(tp)
        self.metrics.assigned_partitions.set(len(self.assigned))
        if self.budgets is not None:  # up before the new partitions' first record
            self.budgets.apply(len(self.assigned), total)
        self.state.restore(restored, now)

    async def release(self, tps: set[TopicPartition], drain_s: float | None) -> Offsets:
        """Let go of partitions: drain (when revoked), take their committable offsets, forget them."""
        if drain_s is not None and not await self.dispatcher.drain(tps, drain_s):
            log.warning(
                "%d sends of revoked partitions cancelled after the grace period", self.dispatcher.cancel(tps)
            )
        self.dispatcher.cancel(tps)
        offsets: Offsets = {}
        if drain_s is not None:
            # Ledger and dead-letter writes of what just finished must be acknowledged before their
            # offsets are committed: the next owner restores the ledger, and must see these sends
            # (the sent entries held back to share a request too, cancelled sends' included).
            await self.settle(5.0)
            offsets = {tp: o for tp, o in self.tracker.committable().items() if tp in tps}
        for tp in tps:
            self.tracker.revoke(tp)
            self.assigned.discard(tp)
        self.state.forget((p for _, p in tps), (p for _, p in self.assigned))
        self.metrics.assigned_partitions.set(len(self.assigned))
        if self.budgets is not None:  # down once drained, before another member is given them
            self.budgets.apply(len(self.assigned))
        return offsets
