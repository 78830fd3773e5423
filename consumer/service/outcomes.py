"""Outcomes: every (record, mapping) pair ends here, counted once, as sent, skipped or dead-lettered.

A dead-lettered outcome counts only once Kafka acknowledged the dead-letter record; a record is
done (its offset may be committed) when its last expected outcome is in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from consumer.errors import ConsumerError
from consumer.kafka.deadletter import DeadLetterWriter
from consumer.metrics import Metrics
from consumer.service.records import RecordState

log = logging.getLogger(__name__)

DEAD_LETTER_RETRY_S = 1.0


class Outcomes:
    """Count outcomes, write dead letters, and report each finished record to `on_done`."""

    def __init__(
        self, metrics: Metrics, dead_letters: DeadLetterWriter, on_done: Callable[[RecordState], None]
    ) -> None:
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.on_done = on_done
        # Labelled children looked up once: labels() validates and locks on every call, and this
        # runs once or twice per message (the label sets are small and fixed, so the dict is too).
        self._counters: dict[tuple[str, str, str], Any] = {}

    def finish(self, record: RecordState, mapping_id: str, outcome: str, reason: str) -> None:
        """Count one (record, mapping) outcome; when it was the record's last, the record is done."""
        counter = self._counters.get((mapping_id, outcome, reason))
        if counter is None:
            counter = self.metrics.outcomes.labels(mapping_id or "none", outcome, reason)
            self._counters[(mapping_id, outcome, reason)] = counter
        counter.inc()
        if record.add((mapping_id, outcome, reason)):
            self.on_done(record)

    def dead_letter(
        self,
        record: RecordState,
        error: ConsumerError,
        reason: str,
        mapping_id: str | None,
        attempts: int | None = None,
    ) -> None:
        """Write the record to the dead-letter topic; its outcome counts once Kafka acknowledged it."""
        self.metrics.dead_letters.labels(error.stage, reason).inc()
        log.warning(
            "dead-lettering record: %s", error.message,
            extra={**record.where, "mapping": mapping_id, "stage": error.stage, "reason": reason,
                   "twilio_code": getattr(error, "code", None)},
        )  # fmt: skip
        self._write(record, error, reason, mapping_id, attempts=attempts, loop=asyncio.get_running_loop())

    def _write(
        self,
        record: RecordState,
        error: ConsumerError,
        reason: str,
        mapping_id: str | None,
        *,
        attempts: int | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        def delivered(err: Exception | None) -> None:
            if err is None:
                self.finish(record, mapping_id or "", "dead_lettered", reason)
                return
            # Never drop it: the offset stays uncommitted while we try again. (Reports reach this on
            # the loop: the dead-letter writer hands them over, consumer.kafka.reports.on_loop.)
            log.error("dead-letter write failed, retrying in %.0f s: %s", DEAD_LETTER_RETRY_S, err)
            retry = functools.partial(
                self._write, record, error, reason, mapping_id, attempts=attempts, loop=loop
            )
            loop.call_later(DEAD_LETTER_RETRY_S, retry)

        self.dead_letters.write(
            topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
            value=record.value, headers=record.headers, error=error, reason=reason, mapping_id=mapping_id,
            now=datetime.now(UTC), on_delivery=delivered, attempts=attempts,
        )  # fmt: skip
