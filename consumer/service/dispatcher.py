"""Lanes and tasks: each outbound message runs as a task, in order per recipient, concurrently otherwise.

Ordering (invariant 6): messages to one recipient from one partition go through a lane, a chain of
futures, so the second waits for the first (including its retries); other recipients run
concurrently. Drains (SIGTERM, a revoked partition) let requests already on the wire finish and
abandon the rest unsent, their records left unfinished for the next owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from consumer.pipeline.message import OutboundMessage
from consumer.service.records import RecordState

TopicPartition = tuple[str, int]
Deliver = Callable[[RecordState, OutboundMessage], Awaitable[None]]


class Dispatcher:
    """Start each message's delivery in its recipient's lane; drain or cancel partitions' tasks."""

    def __init__(self, deliver: Deliver, on_wire: set[asyncio.Task[Any]]) -> None:
        self.deliver = deliver
        self.on_wire = on_wire  # tasks whose request may be on the wire (owned by the delivery)
        self._lanes: dict[tuple[str, int, str], asyncio.Future[None]] = {}
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}

    def submit(self, record: RecordState, message: OutboundMessage) -> None:
        """Start delivering `message` after earlier messages to the same recipient from this partition."""
        lane = (record.topic, record.partition, message.recipient)
        previous = self._lanes.get(lane)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lanes[lane] = mine
        self.track(record.tp, asyncio.create_task(self._run(record, message, previous, mine, lane)))

    def track(self, tp: TopicPartition, task: asyncio.Task[None]) -> None:
        """Count `task` among the partition's work: drained, cancelled and settled with its sends
        (the intake's wait for a writer schema is such work)."""
        tasks = self._tasks.setdefault(tp, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run(
        self,
        record: RecordState,
        message: OutboundMessage,
        previous: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
        lane: tuple[str, int, str],
    ) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            await self.deliver(record, message)
        finally:
            mine.set_result(None)
            if self._lanes.get(lane) is mine:
                del self._lanes[lane]

    def tasks(self, partitions: set[TopicPartition] | None = None) -> list[asyncio.Task[None]]:
        """The unfinished tasks of these partitions (all when None)."""
        return [t for tp, ts in self._tasks.items() if partitions is None or tp in partitions for t in ts]

    async def settle(self) -> None:
        """Wait until every task started so far has ended (tests and benchmarks)."""
        while tasks := self.tasks():
            await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self, partitions: set[TopicPartition] | None, timeout_s: float) -> bool:
        """Stop these partitions' sends (all when None): requests already written get up to `timeout_s`
        to finish; the rest are abandoned unsent. True when everything in flight finished in time."""
        tasks = self.tasks(partitions)
        for task in tasks:
            if task not in self.on_wire:
                task.cancel()
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        return not pending

    def cancel(self, partitions: set[TopicPartition] | None) -> int:
        """Cancel every task of these partitions (all when None); return how many there were."""
        tasks = self.tasks(partitions)
        for task in tasks:
            task.cancel()
        return len(tasks)
