"""Intake: a consumed record becomes its outcomes, or the sends that will end in them.

record ─► tombstone? skipped ─► decode ─► handle (match, render) ─► Send → dispatcher
                                  │                                 Skip → skipped:<reason>
                                  └► DecodeError → dead-lettered     Fail → dead-lettered
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from consumer.errors import DecodeError, RecordRef
from consumer.events.decode import Headers
from consumer.events.model import Event
from consumer.mappings.match import MatchIndex
from consumer.pipeline.handle import Fail, Send, handle
from consumer.service.dispatcher import Dispatcher
from consumer.service.outcomes import Outcomes
from consumer.service.records import RecordState


class EventDecoder(Protocol):
    def decode(
        self, value: bytes | None, headers: Headers | None = None, *, record: RecordRef | None = None
    ) -> Event: ...


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
    ) -> None:
        self.decoder = decoder
        self.index = index
        self.outcomes = outcomes
        self.dispatcher = dispatcher
        self.default_region = default_region
        self.strict_numbers = strict_numbers
        self.clock = clock

    def accept(self, record: RecordState) -> None:
        """Decide what happens to `record`; its outcomes follow now or when its sends finish."""
        if record.value is None:
            # A tombstone (a deleted key on a compacted topic) is not an event and nothing is wrong.
            record.expect(1)
            self.outcomes.finish(record, "", "skipped", "tombstone")
            return
        ref = RecordRef(record.topic, record.partition, record.offset)
        try:
            event = self.decoder.decode(record.value, record.headers, record=ref)
        except DecodeError as error:
            record.expect(1)
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
                self.outcomes.dead_letter(record, failure, decision.error.reason, decision.mapping_id)
            else:
                self.outcomes.finish(record, decision.mapping_id, "skipped", decision.reason)
