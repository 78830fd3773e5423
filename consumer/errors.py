"""One error hierarchy for the whole data path.

    ConsumerError
     ├── SettingsError          settings invalid at start-up (names the variable and the fix)
     ├── DecodeError            bytes could not become an Event (dead-lettered, stage "decode")
     │    └── SourceFieldMissing  a record lacks what its `sources:` entry reads (skipped, counted)
     ├── RegistryError          the Schema Registry could not be asked (the records wait, never dead-lettered)
     ├── MappingError           a mapping file or mapping is invalid (reported at load, all at once)
     ├── RenderError            an Event x Mapping could not become a Twilio request
     ├── TwilioError            Twilio answered an error, or the request failed in transport
     ├── WebhookError           a webhook post is not one Twilio could have sent (answered 400, counted)
     ├── KafkaError             the Kafka client reported an error (with librdkafka's code)
     └── StateError             the ledger's local state store cannot be used (its directory, its lock)

Every error carries the context a user needs to act on it (topic/partition/offset, mapping id, field,
Twilio code) and a message that says what to fix. Third-party exceptions are translated once, at the
edge that calls the library, never deeper in the core.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class RecordRef:
    """Where a record came from: enough to find it again in Kafka."""

    topic: str = ""
    partition: int = -1
    offset: int = -1

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class ConsumerError(Exception):
    """Root of every error this project raises on purpose."""

    #: The data-path stage the error belongs to; it becomes the dead-letter `stage` header.
    stage: str = "consumer"
    #: The `sources:` entry that read the record, when it was not Segment-shaped (a dead-letter header).
    source: str | None = None

    def __init__(self, message: str, *, record: RecordRef | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.record = record

    def with_record(self, record: RecordRef) -> ConsumerError:
        """Attach the Kafka coordinates once they are known (the pure stages do not know them)."""
        self.record = record
        return self

    def __str__(self) -> str:
        where = f" (record {self.record})" if self.record and self.record.topic else ""
        return f"{self.message}{where}"


class SettingsError(ConsumerError):
    """Settings are missing or invalid; raised once at start-up."""

    stage = "settings"


class DecodeError(ConsumerError):
    """A record's bytes could not be decoded into an Event.

    `reason` is a short, bounded label (used in metrics and dead-letter headers), e.g.
    `truncated`, `bad_magic_byte`, `unknown_schema`, `schema_mismatch`, `invalid_utf8`,
    `invalid_json`, `too_large`, `not_an_event`.
    """

    stage = "decode"

    def __init__(self, message: str, *, reason: str, record: RecordRef | None = None) -> None:
        super().__init__(message, record=record)
        self.reason = reason


class SourceFieldMissing(DecodeError):
    """A record lacks a field its source reads, or holds one of the wrong kind. Where the writer schema
    is known these paths were checked at start-up; otherwise this is the per-record check: the record is
    skipped (`skipped:missing_field`, counted), the path in the message."""


class RegistryError(ConsumerError):
    """The Schema Registry could not be asked for a writer schema: unreachable, slow, failing (5xx) or
    refusing the credentials. Not a DecodeError: nothing is wrong with the record, so it waits (with
    every later record of its partition) until the registry answers, and is never dead-lettered.

    `reason` is `registry_unavailable` or `registry_refused` (credentials); `key` is the schema id or
    GUID asked for.
    """

    stage = "registry"

    def __init__(
        self, message: str, *, reason: str, key: int | str | None = None, record: RecordRef | None = None
    ) -> None:
        super().__init__(message, record=record)
        self.reason = reason
        self.key = key


class MappingError(ConsumerError):
    """A mapping is invalid. `problems` holds every problem found, each naming file, id, field, fix."""

    stage = "mapping"

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class RenderError(ConsumerError):
    """An Event x Mapping could not become a Twilio request (bad template, bad field value)."""

    stage = "render"

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        mapping_id: str = "",
        field: str = "",
        record: RecordRef | None = None,
    ) -> None:
        super().__init__(message, record=record)
        self.reason = reason
        self.mapping_id = mapping_id
        self.field = field


class ErrorClass(enum.Enum):
    """How a Twilio failure is treated (see reference/twilio-api.md)."""

    RETRYABLE = "retryable"  # never processed or transient: retry with backoff
    MAY_HAVE_SENT = "may_have_sent"  # failed after the request was written (read timeout, 5xx)
    PERMANENT = "permanent"  # this message will never succeed: dead-letter
    RECIPIENT = "recipient"  # this recipient must not be messaged again: suppress, dead-letter
    CONFIGURATION = "configuration"  # credentials, sender, region: stop sending, alert


class TwilioError(ConsumerError):
    """Twilio answered an error, or the HTTP exchange failed."""

    stage = "send"

    def __init__(
        self,
        message: str,
        *,
        error_class: ErrorClass,
        code: int | None = None,
        status: int | None = None,
        more_info: str = "",
        retry_after_s: float | None = None,
        record: RecordRef | None = None,
    ) -> None:
        super().__init__(message, record=record)
        self.error_class = error_class
        self.code = code
        self.status = status
        self.more_info = more_info
        self.retry_after_s = retry_after_s


class KafkaError(ConsumerError):
    """The Kafka client reported an error (translated once, in `consumer.kafka.errors.kafka_error`).

    `code` is librdkafka's error name (`_ALL_BROKERS_DOWN`, `MSG_SIZE_TOO_LARGE`, …; empty when the
    failure did not come with one), `retriable` and `fatal` are librdkafka's own verdicts.
    """

    stage = "kafka"

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        retriable: bool = False,
        fatal: bool = False,
        record: RecordRef | None = None,
    ) -> None:
        super().__init__(message, record=record)
        self.code = code
        self.retriable = retriable
        self.fatal = fatal


class WebhookError(ConsumerError):
    """A webhook post lacks what every Twilio post carries (answered 400 and counted, never produced)."""

    stage = "webhook"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class StateError(ConsumerError):
    """The ledger's state store on disk cannot be opened or written (at start-up: names the fix)."""

    stage = "state"
