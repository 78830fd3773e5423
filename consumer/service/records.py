"""A consumed record on its way to its outcomes: one per mapping it fired (or one skip)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from consumer.kafka.deadletter import Headers

Outcome = tuple[str, str, str]  # (mapping id, "sent" | "skipped" | "dead_lettered", reason)


@dataclass(eq=False, slots=True)
class RecordState:
    """One consumed record (mutable; lives on the event loop).

    `pending` is how many outcomes are still to come: set once by `expect` when the record's
    decisions are known, counted down by `add`; the record is finished when it reaches 0.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    generation: int = 0  # the assignment this record was consumed under (stale outcomes are ignored)
    timestamp_ms: int = 0  # the record's Kafka timestamp (0 when the producer gave none)
    message_id: str = ""  # the event's messageId once decoded, for logs
    event_time: str | None = None  # the event's own timestamp (ISO 8601) once decoded
    pending: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    @classmethod
    def of(cls, message: Any, generation: int) -> RecordState:
        """The state of a confluent_kafka.Message (one without an error)."""
        kind, timestamp_ms = message.timestamp()
        return cls(
            message.topic(), message.partition(), message.offset(), message.key(), message.value(),
            message.headers(), generation, timestamp_ms if kind != TIMESTAMP_NOT_AVAILABLE else 0,
        )  # fmt: skip

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def where(self) -> dict[str, object]:
        """Log fields that find the record again (no personal data)."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                "message_id": self.message_id}  # fmt: skip

    def expect(self, count: int) -> None:
        self.pending = count

    def add(self, outcome: Outcome) -> bool:
        """Record one outcome; True when it was the last one expected."""
        self.outcomes.append(outcome)
        self.pending -= 1
        return self.pending == 0
