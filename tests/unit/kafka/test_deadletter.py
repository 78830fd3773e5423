"""Dead-letter headers: originals kept, error context added, and read back for replay (invariant 3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Producer

from consumer.errors import ConsumerError, DecodeError, ErrorClass, KafkaError, RenderError, TwilioError
from consumer.kafka import deadletter as dl
from consumer.kafka.deadletter import DeadLetterWriter, dead_letter_headers, parse_dead_letter_headers
from tests.fakes import FakeCluster, FakeProducer

NOW = datetime(2025, 1, 31, 9, 30, 0, 123000, tzinfo=UTC)
ORIGINAL = [("traceparent", b"00-abc-def-01"), ("empty", None), ("dup", b"1"), ("dup", b"2")]


def headers_for(error: BaseException, **overrides: object) -> list[tuple[str, str | bytes | None]]:
    args: dict[str, object] = {
        "topic": "segment-events",
        "partition": 3,
        "offset": 1234,
        "headers": ORIGINAL,
        "error": error,
        "reason": "invalid_number",
        "mapping_id": "welcome-sms",
        "now": NOW,
    }
    args.update(overrides)
    return dead_letter_headers(**args)  # type: ignore[arg-type]


def test_original_headers_come_first_unchanged_and_in_order() -> None:
    headers = headers_for(DecodeError("bad magic byte", reason="bad_magic_byte"))
    assert headers[: len(ORIGINAL)] == ORIGINAL
    assert all(k.startswith(dl.PREFIX) for k, _ in headers[len(ORIGINAL) :])


def test_error_headers_carry_the_source_coordinates_stage_class_and_reason_as_utf8() -> None:
    headers = dict(headers_for(DecodeError("bad magic byte 0x07", reason="bad_magic_byte"), mapping_id=None))
    assert headers[dl.TOPIC] == b"segment-events"
    assert headers[dl.PARTITION] == b"3"
    assert headers[dl.OFFSET] == b"1234"
    assert headers[dl.STAGE] == b"decode"
    assert headers[dl.CLASS_NAME] == b"consumer.errors.DecodeError"
    assert headers[dl.MESSAGE] == b"bad magic byte 0x07"
    assert headers[dl.REASON] == b"invalid_number"
    assert headers[dl.TIMESTAMP] == b"2025-01-31T09:30:00.123000+00:00"
    assert dl.MAPPING not in headers
    assert dl.TWILIO_CODE not in headers


def test_twilio_errors_add_the_twilio_code_and_http_status() -> None:
    error = TwilioError("invalid To", error_class=ErrorClass.PERMANENT, code=21211, status=400)
    headers = dict(headers_for(error, attempts=2))
    assert headers[dl.STAGE] == b"send"
    assert headers[dl.TWILIO_CODE] == b"21211"
    assert headers[dl.TWILIO_STATUS] == b"400"
    assert headers[dl.MAPPING] == b"welcome-sms"
    assert headers[dl.ATTEMPTS] == b"2"


def test_phone_numbers_in_the_error_message_are_masked() -> None:
    error = TwilioError(
        "The 'To' number +14155550123 is not a valid phone number.",
        error_class=ErrorClass.PERMANENT,
        code=21211,
    )
    message = dict(headers_for(error))[dl.MESSAGE]
    assert message == b"The 'To' number +1415*****23 is not a valid phone number."


def test_the_stored_message_is_the_errors_own_text_without_record_decoration() -> None:
    error = RenderError("template failed at line 2", reason="template_error", mapping_id="m")
    assert dict(headers_for(error))[dl.MESSAGE] == b"template failed at line 2"


def test_a_very_long_error_message_is_capped() -> None:
    message = dict(headers_for(ConsumerError("x" * 50_000)))[dl.MESSAGE]
    assert isinstance(message, bytes)
    assert len(message.decode()) == dl.MAX_MESSAGE_CHARS


def test_an_unexpected_exception_is_recorded_with_its_class_and_an_internal_stage() -> None:
    headers = dict(headers_for(KeyError("properties")))
    assert headers[dl.STAGE] == b"internal"
    assert headers[dl.CLASS_NAME] == b"builtins.KeyError"
    assert headers[dl.MESSAGE] == b"'properties'"


def test_a_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        headers_for(ConsumerError("x"), now=datetime(2025, 1, 1))


def test_dict_and_missing_original_headers_are_accepted() -> None:
    assert headers_for(ConsumerError("x"), headers={"a": b"1"})[0] == ("a", b"1")
    assert headers_for(ConsumerError("x"), headers=None)[0][0] == dl.TOPIC


def test_parsing_reads_back_what_was_written_and_returns_the_original_headers() -> None:
    error = TwilioError("queue full", error_class=ErrorClass.RETRYABLE, code=21611, status=400)
    info = parse_dead_letter_headers(headers_for(error, attempts=7, reason="retries_exhausted"))
    assert info == dl.DeadLetterInfo(
        topic="segment-events",
        partition=3,
        offset=1234,
        stage="send",
        class_name="consumer.errors.TwilioError",
        message="queue full",
        reason="retries_exhausted",
        twilio_code=21611,
        twilio_status=400,
        mapping_id="welcome-sms",
        attempts=7,
        timestamp=NOW,
        original_headers=tuple(ORIGINAL),
    )


def test_parsing_keeps_a_non_utc_timestamp_aware() -> None:
    cet = datetime(2025, 1, 31, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    info = parse_dead_letter_headers(headers_for(ConsumerError("x"), now=cet))
    assert info.timestamp == datetime(2025, 1, 31, 9, 30, tzinfo=UTC)


def test_the_last_error_header_wins_when_a_record_was_dead_lettered_twice() -> None:
    first = headers_for(ConsumerError("first"), reason="template_error")
    second = dead_letter_headers(
        topic="segment-events",
        partition=3,
        offset=99,
        headers=first,
        error=ConsumerError("second"),
        reason="retries_exhausted",
        mapping_id=None,
        now=NOW,
    )
    info = parse_dead_letter_headers(second)
    assert (info.offset, info.reason, info.message) == (99, "retries_exhausted", "second")
    assert info.original_headers == tuple(ORIGINAL)


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        (None, "headers .*topic.* are missing"),
        ([("traceparent", b"x")], "are missing"),
        ([(dl.TOPIC, b"t"), (dl.PARTITION, b"x"), (dl.OFFSET, b"1"), (dl.REASON, b"r")], "must be integers"),
    ],
)
def test_records_without_valid_error_headers_raise_a_decode_error(
    headers: list[tuple[str, bytes]] | None, match: str
) -> None:
    with pytest.raises(DecodeError, match=match) as caught:
        parse_dead_letter_headers(headers)
    assert caught.value.reason == "not_dead_letter"


def test_optional_headers_that_do_not_parse_read_as_none() -> None:
    headers = [
        (dl.TOPIC, b"t"),
        (dl.PARTITION, b"0"),
        (dl.OFFSET, b"1"),
        (dl.REASON, b"r"),
        (dl.TWILIO_CODE, b"n/a"),
        (dl.TIMESTAMP, b"yesterday"),
    ]
    info = parse_dead_letter_headers(headers)
    assert (info.twilio_code, info.timestamp, info.mapping_id) == (None, None, None)


def offline_producer(**config: object) -> Producer:
    """A real producer with nowhere to deliver (nothing listens on port 1)."""
    return Producer(
        {"bootstrap.servers": "127.0.0.1:1", "log_level": 0, "error_cb": lambda _err: None, **config}
    )


def write_one(
    writer: DeadLetterWriter, on_delivery: Callable[[Exception | None], None], value: bytes = b"v"
) -> None:
    writer.write(
        topic="t", partition=0, offset=7, key=b"k", value=value, headers=None, error=ConsumerError("x"),
        reason="r", mapping_id=None, now=NOW, on_delivery=on_delivery,
    )  # fmt: skip


def test_a_record_the_producer_refuses_as_too_large_is_written_without_its_value() -> None:
    cluster = FakeCluster()
    producer = FakeProducer(cluster)
    too_large = KafkaException(RdKafkaError(RdKafkaError.MSG_SIZE_TOO_LARGE))
    producer.refuse = lambda topic, value: too_large if value is not None and len(value) > 1000 else None
    results: list[Exception | None] = []
    write_one(DeadLetterWriter(producer, "dlq"), results.append, value=b"x" * 5000)
    producer.poll(0)
    assert results == [None], "the dead letter is written, so the source offset can be finished"
    [record] = cluster.topics["dlq"][0]
    assert record.value() is None
    assert record.key() == b"k"
    info = parse_dead_letter_headers(record.headers())
    assert (info.topic, info.offset, info.reason) == ("t", 7, "r")
    assert (dl.VALUE_DROPPED, b"5000 bytes: too large for the dead-letter topic") in record.headers()


def test_a_record_the_producer_refuses_for_another_reason_is_reported_at_once_through_on_delivery() -> None:
    producer = FakeProducer(FakeCluster())
    producer.refuse = lambda topic, value: KafkaException(RdKafkaError(RdKafkaError._UNKNOWN_PARTITION))
    results: list[Exception | None] = []
    write_one(DeadLetterWriter(producer, "dlq"), results.append)
    assert len(results) == 1
    assert isinstance(results[0], KafkaError)
    assert results[0].code == "_UNKNOWN_PARTITION"
    assert "t[0]@7 to topic 'dlq' was refused" in str(results[0])


@pytest.mark.parametrize("wait_s", [0.0, 0.2])
def test_a_producer_queue_that_stays_full_reports_a_kafka_error_through_on_delivery(wait_s: float) -> None:
    # The one-message queue is full after the first write.
    producer = offline_producer(**{"queue.buffering.max.messages": 1})
    writer = DeadLetterWriter(producer, "dlq", buffer_wait_s=wait_s)
    results: dict[int, Exception | None] = {}
    for offset in (1, 2):
        writer.write(
            topic="t",
            partition=0,
            offset=offset,
            key=b"k",
            value=b"v",
            headers=None,
            error=ConsumerError("x"),
            reason="r",
            mapping_id=None,
            now=NOW,
            on_delivery=lambda err, offset=offset: results.__setitem__(offset, err),  # type: ignore[misc]
        )
    assert list(results) == [2], "the refused record is reported at once, the queued one is not"
    assert isinstance(results[2], KafkaError)
    assert f"t[0]@2 to topic 'dlq': the producer queue is full (waited {wait_s:g}s)" in str(results[2])
    producer.purge()
    producer.flush(1)
    assert isinstance(results[1], KafkaError)  # the queued record, purged, still gets its one report
    assert "_PURGE_QUEUE" in str(results[1])


def test_an_error_of_a_users_own_record_names_its_source() -> None:
    error = DecodeError("the record has no value at 'order_id'", reason="missing_field")
    error.source = "shop-orders"
    assert (dl.SOURCE, b"shop-orders") in headers_for(error)
    assert not any(k == dl.SOURCE for k, _ in headers_for(DecodeError("x", reason="truncated")))
