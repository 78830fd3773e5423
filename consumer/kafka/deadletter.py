"""The dead-letter topic: poisoned records go here instead of stopping their partition (invariant 3).

A dead-letter record carries the original key, value and headers unchanged, followed by error
headers modelled on Kafka Connect's `__connect.errors.*`:

    kafka_twilio.errors.topic / .partition / .offset   where the record came from
    kafka_twilio.errors.stage                           decode | render | send | ...
    kafka_twilio.errors.class.name                      e.g. consumer.errors.TwilioError
    kafka_twilio.errors.exception.message               phone numbers masked, length capped
    kafka_twilio.errors.reason                          bounded label, the replay filter
    kafka_twilio.errors.twilio.code / .twilio.status    when Twilio answered
    kafka_twilio.errors.mapping                         mapping id, when known
    kafka_twilio.errors.source                          the `sources:` entry that read the record, if any
    kafka_twilio.errors.attempts                        send attempts, when known
    kafka_twilio.errors.timestamp                       ISO-8601 UTC time of dead-lettering
    kafka_twilio.errors.value.dropped                   only when the value was too large to keep

All values are UTF-8 bytes. `kafka-twilio replay` strips them again (consumer/replay.py).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaException

from consumer.errors import DecodeError, KafkaError, TwilioError
from consumer.kafka.clients import ProducerLike
from consumer.kafka.errors import MSG_SIZE_TOO_LARGE, QUEUE_FULL, kafka_error
from consumer.kafka.reports import on_loop
from consumer.logs import mask_text

PREFIX = "kafka_twilio.errors."
TOPIC = PREFIX + "topic"
PARTITION = PREFIX + "partition"
OFFSET = PREFIX + "offset"
STAGE = PREFIX + "stage"
CLASS_NAME = PREFIX + "class.name"
MESSAGE = PREFIX + "exception.message"
REASON = PREFIX + "reason"
TWILIO_CODE = PREFIX + "twilio.code"
TWILIO_STATUS = PREFIX + "twilio.status"
MAPPING = PREFIX + "mapping"
SOURCE = PREFIX + "source"
ATTEMPTS = PREFIX + "attempts"
TIMESTAMP = PREFIX + "timestamp"
VALUE_DROPPED = PREFIX + "value.dropped"

# Kafka headers are small metadata; an error message (an HTML error page, a long template error)
# must not make the dead-letter record larger than the broker accepts.
MAX_MESSAGE_CHARS = 2000

Header = tuple[str, str | bytes | None]  # what confluent-kafka accepts; it hands back bytes | None
Headers = Sequence[Header] | Mapping[str, str | bytes | None]


def _as_list(headers: Headers | None) -> list[Header]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def dead_letter_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    headers: Headers | None,
    error: BaseException,
    reason: str,
    mapping_id: str | None,
    now: datetime,
    attempts: int | None = None,
) -> list[Header]:
    """Return the original headers, unchanged and in order, followed by the error headers."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (pass datetime.now(UTC))")
    message = mask_text(getattr(error, "message", None) or str(error) or type(error).__name__)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    added: list[tuple[str, str]] = [
        (TOPIC, topic),
        (PARTITION, str(partition)),
        (OFFSET, str(offset)),
        (STAGE, str(getattr(error, "stage", "internal"))),
        (CLASS_NAME, f"{type(error).__module__}.{type(error).__qualname__}"),
        (MESSAGE, message),
        (REASON, reason),
    ]
    if isinstance(error, TwilioError):
        if error.code is not None:
            added.append((TWILIO_CODE, str(error.code)))
        if error.status is not None:
            added.append((TWILIO_STATUS, str(error.status)))
    if mapping_id:
        added.append((MAPPING, mapping_id))
    source = getattr(error, "source", None)
    if source:
        added.append((SOURCE, str(source)))
    if attempts is not None:
        added.append((ATTEMPTS, str(attempts)))
    added.append((TIMESTAMP, now.isoformat()))
    return _as_list(headers) + [(k, v.encode("utf-8")) for k, v in added]


@dataclass(frozen=True)
class DeadLetterInfo:
    """What a dead-letter record's headers say, plus the original headers without the error ones."""

    topic: str
    partition: int
    offset: int
    stage: str
    class_name: str
    message: str
    reason: str
    twilio_code: int | None
    twilio_status: int | None
    mapping_id: str | None
    attempts: int | None
    timestamp: datetime | None
    original_headers: tuple[Header, ...]


def parse_dead_letter_headers(headers: Headers | None) -> DeadLetterInfo:
    """Read the error headers back; raise DecodeError(reason="not_dead_letter") when they are missing.

    When a key repeats (a record dead-lettered, replayed and dead-lettered again), the last one wins.
    """
    originals: list[Header] = []
    found: dict[str, str] = {}
    for key, value in _as_list(headers):
        if key.startswith(PREFIX):
            found[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""
        else:
            originals.append((key, value))
    missing = [k for k in (TOPIC, PARTITION, OFFSET, REASON) if k not in found]
    if missing:
        raise DecodeError(
            f"not a dead-letter record: headers {', '.join(missing)} are missing"
            " (was it written by kafka-twilio's DeadLetterWriter?)",
            reason="not_dead_letter",
        )
    try:
        partition, offset = int(found[PARTITION]), int(found[OFFSET])
    except ValueError:
        raise DecodeError(
            f"dead-letter headers {PARTITION}={found[PARTITION]!r} and {OFFSET}={found[OFFSET]!r}"
            " must be integers",
            reason="not_dead_letter",
        ) from None
    return DeadLetterInfo(
        topic=found[TOPIC],
        partition=partition,
        offset=offset,
        stage=found.get(STAGE, ""),
        class_name=found.get(CLASS_NAME, ""),
        message=found.get(MESSAGE, ""),
        reason=found[REASON],
        twilio_code=_int_or_none(found.get(TWILIO_CODE)),
        twilio_status=_int_or_none(found.get(TWILIO_STATUS)),
        mapping_id=found.get(MAPPING) or None,
        attempts=_int_or_none(found.get(ATTEMPTS)),
        timestamp=_datetime_or_none(found.get(TIMESTAMP)),
        original_headers=tuple(originals),
    )


def _int_or_none(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _datetime_or_none(text: str | None) -> datetime | None:
    try:
        return None if text is None else datetime.fromisoformat(text)
    except ValueError:
        return None


DeliveryCallback = Callable[[Exception | None], None]


class DeadLetterWriter:
    """Produce dead-letter records asynchronously; the caller drives `producer.poll()`/`flush()`.

    `on_delivery` is called exactly once per `write`: from poll/flush once the broker answered, or
    at once when the producer refuses the record. Only a `None` there means the record is safe, and
    only then may the source offset be finished. When librdkafka's queue is full, `write` serves
    delivery reports and retries for at most `buffer_wait_s` (default 0: one retry, so an event loop
    is never blocked), then reports a KafkaError: retry later, the source offset stays uncommitted.

    A record too large for the producer or the broker (the original value plus the error headers over
    `message.max.bytes`) is written again without its value, and `kafka_twilio.errors.value.dropped`
    says how many bytes were left out: the error and the coordinates still reach the topic (the
    original can be read at its source offset), instead of a write that fails forever.
    """

    def __init__(self, producer: ProducerLike, topic: str, *, buffer_wait_s: float = 0.0) -> None:
        self.producer = producer
        self.topic = topic
        self._buffer_wait_s = buffer_wait_s

    def write(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        error: BaseException,
        reason: str,
        mapping_id: str | None,
        now: datetime,
        on_delivery: DeliveryCallback,
        attempts: int | None = None,
    ) -> None:
        """Queue one dead-letter record for `topic[partition]@offset`."""
        all_headers = dead_letter_headers(
            topic=topic, partition=partition, offset=offset, headers=headers, error=error, reason=reason,
            mapping_id=mapping_id, now=now, attempts=attempts,
        )  # fmt: skip
        self._produce(f"{topic}[{partition}]@{offset}", key, value, all_headers, on_delivery)

    def _produce(
        self,
        where: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header],
        on_delivery: DeliveryCallback,
    ) -> None:
        def without_value() -> None:
            dropped: list[Header] = [
                (VALUE_DROPPED, f"{len(value or b'')} bytes: too large for the dead-letter topic".encode())
            ]
            self._produce(where, key, None, headers + dropped, on_delivery)

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                on_delivery(None)
                return
            failure = kafka_error(err, f"dead-letter write of {where} to topic {self.topic!r} failed",
                                  "check that the topic exists and this client may write to it")  # fmt: skip
            if failure.code == MSG_SIZE_TOO_LARGE and value is not None:
                without_value()
            else:
                on_delivery(failure)

        deadline = time.monotonic() + self._buffer_wait_s
        for attempt in itertools.count():
            try:
                self.producer.produce(
                    self.topic, key=key, value=value, headers=headers, on_delivery=on_loop(delivered)
                )
            except BufferError:
                # librdkafka's local queue is full: serve delivery reports to make room, then try again.
                remaining = deadline - time.monotonic()
                if attempt > 0 and remaining <= 0:
                    on_delivery(KafkaError(
                        f"dead-letter write of {where} to topic {self.topic!r}: the producer queue is"
                        f" full (waited {self._buffer_wait_s:g}s); the broker is slow or unreachable",
                        code=QUEUE_FULL, retriable=True,
                    ))  # fmt: skip
                    return
                self.producer.poll(max(0.0, min(0.05, remaining)))
                continue
            except KafkaException as exc:  # refused before queueing: too large, unknown partition
                failure = kafka_error(
                    exc, f"dead-letter write of {where} to topic {self.topic!r} was refused"
                )
                if failure.code == MSG_SIZE_TOO_LARGE and value is not None:
                    without_value()
                else:
                    on_delivery(failure)
            return
