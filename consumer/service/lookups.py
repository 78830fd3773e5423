"""Schema look-ups off the event loop: each writer schema asked for once, retried until it comes.

A record whose writer schema the decoder has not got yet cannot be decoded, but nothing is wrong with
it: while the registry is down, slow or failing, it waits (the intake holds every later record of its
partition behind it, so order holds), and it is never dead-lettered for that. Requests run on a
worker thread, so a registry that takes seconds to answer delays only the records that need it, never
the event loop that drives every send. Concurrent needs of one schema share one request; once
learned, the decoder's cache answers and the registry is not asked again.

Only two answers end a wait: the schema (learned), or a DecodeError (`unknown_schema`: the registry
has no such id; `schema_mismatch`: it is not an Avro record), which dead-letters that one record.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from consumer.errors import DecodeError, RegistryError
from consumer.events.decode import Headers
from consumer.events.registry import RegistryKey, describe_key
from consumer.metrics import Metrics
from consumer.pipeline.retry import compute_backoff

log = logging.getLogger(__name__)

#: Backoff between attempts while the registry cannot be asked (full jitter, seconds).
RETRY_BASE_S = 0.25
RETRY_CAP_S = 10.0


class SchemaSource(Protocol):
    """What look-ups need of the decoder (consumer.events.decode.Decoder)."""

    def registry_key(self, value: bytes | None, headers: Headers | None = None) -> RegistryKey | None: ...
    def fetch_schema(self, key: RegistryKey) -> str: ...
    def learn(self, key: RegistryKey, text: str) -> None: ...


@dataclass
class _Fetch:
    task: asyncio.Task[None]
    waiters: int = 0


@dataclass
class Lookups:
    """Fetch writer schemas for the decoder, sharing and retrying requests; say why records wait."""

    source: SchemaSource
    metrics: Metrics
    base_s: float = RETRY_BASE_S
    cap_s: float = RETRY_CAP_S
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = random.random
    _fetches: dict[RegistryKey, _Fetch] = field(default_factory=dict)
    _failing: dict[RegistryKey, str] = field(default_factory=dict)
    _executor: ThreadPoolExecutor | None = None

    @property
    def problem(self) -> str:
        """Why records wait for the registry now ("" when no look-up is failing)."""
        return next(iter(self._failing.values()), "")

    @property
    def in_progress(self) -> int:
        """How many schemas are being looked up now."""
        return len(self._fetches)

    async def schema(self, key: RegistryKey) -> None:
        """Return once the decoder knows `key`; DecodeError when the registry says it never will.

        Cancelling a waiter leaves the request to the others; the last one to leave cancels it."""
        entry = self._fetches.get(key)
        if entry is None:
            entry = self._fetches[key] = _Fetch(asyncio.create_task(self._fetch(key)))
        entry.waiters += 1
        try:
            await asyncio.shield(entry.task)
        finally:
            entry.waiters -= 1
            if entry.task.done() or entry.waiters == 0:
                entry.task.cancel()
                if self._fetches.get(key) is entry:
                    del self._fetches[key]
                    self._failing.pop(key, None)
                if not self._fetches:
                    self._stop_worker()

    async def _fetch(self, key: RegistryKey) -> None:
        if self._executor is None:
            # One thread: look-ups are rare (once per schema) and a second would only hit a failing
            # registry twice as hard.
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="schema-registry")
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                text = await loop.run_in_executor(self._executor, self.source.fetch_schema, key)
            except RegistryError as error:
                self._count(error.reason)
                if key not in self._failing:
                    log.error("records wait for the Schema Registry: %s", error.message)
                self._failing[key] = error.message
                await self.sleep(
                    compute_backoff(attempt, base_s=self.base_s, cap_s=self.cap_s, rand=self.rand())
                )
                attempt += 1
                continue
            except DecodeError as error:
                self._count(error.reason)
                raise
            break
        if self._failing.pop(key, None) is not None:
            log.warning("the Schema Registry answered for schema %s again; records go on", describe_key(key))
        try:
            self.source.learn(key, text)
        except DecodeError as error:
            self._count(error.reason)
            raise
        self._count("ok")

    def _count(self, result: str) -> None:
        self.metrics.schema_lookups.labels(result).inc()

    def _stop_worker(self) -> None:
        """Let the worker thread go once nothing is being looked up (a request still on the wire ends
        by its timeout); the next look-up starts another."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
