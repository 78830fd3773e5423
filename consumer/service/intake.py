"""Intake: a consumed record becomes its outcomes, or the sends that will end in them.

record ─► schema not known yet? wait (its partition's later records queue behind it)
       ─► tombstone? skipped ─► decode ─► handle (match, render) ─► Send → dispatcher
                                  │                                 Skip → skipped:<reason>
                                  ├► SourceFieldMissing → skipped    Fail → dead-lettered
                                  └► DecodeError → dead-lettered

A partition waits only for the Schema Registry (`consumer.service.lookups`): its records are held in
offset order behind the first one whose writer schema is being fetched, so per-recipient order holds,
and other partitions go on. Held records are unfinished, so they count towards back-pressure.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from consumer.errors import DecodeError, RecordRef, SourceFieldMissing
from consumer.events.decode import Headers
from consumer.events.model import Event
from consumer.events.registry import RegistrySchemas
from consumer.events.schemas import LocalSchemas
from consumer.events.sources import Sources
from consumer.mappings.match import MatchIndex
from consumer.metrics import Metrics
from consumer.pipeline.handle import Fail, Send, handle
from consumer.service.dispatcher import Dispatcher
from consumer.service.lookups import Lookups, SchemaSource
from consumer.service.outcomes import Outcomes
from consumer.service.records import RecordState

log = logging.getLogger(__name__)

#: A partition under one assignment: records of an earlier assignment never join a later one's queue.
_Queue = tuple[str, int, int]


class EventDecoder(SchemaSource, Protocol):
    def decode(
        self, value: bytes | None, headers: Headers | None = None, *, record: RecordRef | None = None
    ) -> Event: ...
    def close(self) -> None: ...
    def use_sources(self, sources: Sources) -> None: ...
    @property
    def schemas(self) -> tuple[LocalSchemas, RegistrySchemas | None]: ...


class Intake:
    """Take each consumed record from bytes to decisions (on the event loop, one record at a time)."""

    def __init__(
        self,
        *,
        decoder: EventDecoder,
        index: MatchIndex,
        outcomes: Outcomes,
        dispatcher: Dispatcher,
        default_region: str,
        strict_numbers: bool,
        clock: Callable[[], float],
        metrics: Metrics,
        lookups: Lookups | None = None,
    ) -> None:
        self.decoder = decoder
        self.index = index
        self.outcomes = outcomes
        self.dispatcher = dispatcher
        self.default_region = default_region
        self.strict_numbers = strict_numbers
        self.clock = clock
        self.metrics = metrics
        self.lookups = lookups or Lookups(decoder, metrics)
        self._held: dict[_Queue, deque[RecordState]] = {}

    @property
    def waiting(self) -> str:
        """Why records wait for their schema ("" when none wait, or none has failed yet)."""
        if not self._held:
            return ""
        problem = self.lookups.problem
        if not problem:
            return ""
        held = sum(len(q) for q in self._held.values())
        return f"{held} records of {len(self._held)} partitions wait for their writer schema: {problem}"

    def accept(self, record: RecordState) -> None:
        """Decide what happens to `record`, now or once its partition's writer schemas are known."""
        queue_id = (record.topic, record.partition, record.generation)
        held = self._held.get(queue_id)
        if held is not None:
            held.append(record)
            self._count_held()
            return
        if self.decoder.registry_key(record.value, record.headers) is not None:
            self._held[queue_id] = deque([record])
            self._count_held()
            self.dispatcher.track(record.tp, asyncio.create_task(self._release(queue_id)))
            return
        self._decide(record)

    async def _release(self, queue_id: _Queue) -> None:
        """Wait for each held record's schema in turn, and decide the records in offset order."""
        held = self._held[queue_id]
        try:
            while held:
                record = held[0]
                key = self.decoder.registry_key(record.value, record.headers)
                if key is not None:
                    try:
                        await self.lookups.schema(key)
                    except DecodeError as error:
                        # The registry does not have it (or it is not Avro): this record is poison.
                        held.popleft()
                        self._count_held()
                        record.expect(1)
                        error.with_record(RecordRef(record.topic, record.partition, record.offset))
                        self.outcomes.dead_letter(record, error, error.reason, None)
                        continue
                held.popleft()
                self._count_held()
                self._decide(record)
        finally:
            # Cancelled (revoked, stopping): the rest stay unfinished and are consumed again later.
            if self._held.get(queue_id) is held:
                del self._held[queue_id]
            self._count_held()

    def _count_source(self, source: str | None, result: str) -> None:
        if source is not None:
            self.metrics.source_records.labels(source, result).inc()

    def _count_held(self) -> None:
        self.metrics.records_waiting_for_schema.set(sum(len(q) for q in self._held.values()))

    def _decide(self, record: RecordState) -> None:
        if record.value is None:
            # A tombstone (a deleted key on a compacted topic) is not an event and nothing is wrong.
            record.expect(1)
            self.outcomes.finish(record, "", "skipped", "tombstone")
            return
        ref = RecordRef(record.topic, record.partition, record.offset)
        try:
            event = self.decoder.decode(record.value, record.headers, record=ref)
        except SourceFieldMissing as error:
            # Where the writer schema was not known at start-up, this is the check: skipped, counted.
            record.expect(1)
            self._count_source(error.source, "skipped")
            log.info("skipping record: %s", error.message, extra={**record.where, "source": error.source})
            self.outcomes.finish(record, "", "skipped", error.reason)
            return
        except DecodeError as error:
            record.expect(1)
            self._count_source(error.source, "dead_lettered")
            self.outcomes.dead_letter(record, error, error.reason, None)
            return
        except Exception as exc:  # noqa: BLE001  a decoder bug must dead-letter one record, not crash-loop
            record.expect(1)
            bug = DecodeError(
                f"unexpected {type(exc).__name__} while decoding: {exc}", reason="internal", record=ref
            )
            self.outcomes.dead_letter(record, bug, bug.reason, None)
            return
        record.message_id = event.message_id
        record.event_time = event.timestamp or event.original_timestamp
        self._count_source(event.source, "decoded")
        now = datetime.fromtimestamp(self.clock(), UTC)
        decisions = handle(
            self.index, event, default_region=self.default_region, now=now, strict_numbers=self.strict_numbers
        )
        record.expect(len(decisions))
        for decision in decisions:
            if isinstance(decision, Send):
                self.dispatcher.submit(record, decision.message)
            elif isinstance(decision, Fail):
                failure = decision.error.with_record(ref)
                failure.source = event.source
                self.outcomes.dead_letter(record, failure, decision.error.reason, decision.mapping_id)
            else:
                self.outcomes.finish(record, decision.mapping_id, "skipped", decision.reason)
