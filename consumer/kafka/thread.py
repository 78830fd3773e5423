"""The Kafka thread: every call on the service's consumer runs on one thread, off the event loop.

librdkafka's consumer calls block (a poll waits for records, a commit for the broker) and its rebalance
callbacks run inside `consume()`, on the calling thread; keeping all of them on one thread means the
callbacks never race another consumer call, and the event loop that drives the sends never blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class KafkaThread:
    """Run blocking Kafka client calls on a single dedicated thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kafka-poll")

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` on the Kafka thread; its result (or exception) on the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)
