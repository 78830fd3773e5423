"""Structured JSON logs with phone numbers masked and secrets never printed (invariant 9)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr

from consumer.errors import SettingsError
from consumer.logs import configure_logging, mask_phone, mask_text


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("+14155550123", "+1415*****23"),
        ("+447700900123", "+4477******23"),
        ("whatsapp:+14155550123", "whatsapp:+1415*****23"),
        ("rcs:+14155550123", "rcs:+1415*****23"),
        ("WhatsApp:+14155550123", "WhatsApp:+1415*****23"),
        ("4155550123", "415*****23"),
        ("+1234567", "+*****67"),  # too short to keep a head
        ("messenger:4820593845", "messenger:482*****45"),
        ("messenger:abcdef", "messenger:****ef"),
        ("ab", "**"),
        ("", ""),
    ],
)
def test_mask_phone_keeps_only_a_short_head_and_the_last_two_digits(address: str, masked: str) -> None:
    assert mask_phone(address) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("The 'To' number +14155550123 is not valid", "The 'To' number +1415*****23 is not valid"),
        ("to whatsapp:+14155550123.", "to whatsapp:+1415*****23."),
        ("call +1 (415) 555-0123 now", "call +1 (415) ***-**23 now"),
        ("call (415) 555-0123 now", "call (415) ***-**23 now"),
        ("call 415-555-0123 now", "call 415-***-**23 now"),
        ("bare 14155550123,", "bare 141******23,"),
        ("+14155550123,+14155550199", "+1415*****23,+1415*****99"),
    ],
)
def test_mask_text_masks_every_phone_number_inside_free_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "message SM0123456789abcdef0123456789abcdef queued",
        "content HX0123456789abcdef0123456789abcdef",
        "at 2025-01-31T09:00:00.123+00:00",
        "id 123e4567-e89b-12d3-a456-426614174000",
        "record events[3]@1234567",
        "broker 127.0.0.1:9092",
        "code 21211 status 400",
        "version 1.2.3456789012",
    ],
)
def test_mask_text_leaves_ids_times_and_offsets_alone(text: str) -> None:
    assert mask_text(text) == text


def test_masking_is_idempotent() -> None:
    once = mask_text("to +14155550123 and 415-555-0123")
    assert mask_text(once) == once


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Configure JSON logging into a buffer; restore the root logger afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("DEBUG", stream=buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.handlers[:] = handlers
    root.setLevel(level)


def test_each_record_is_one_json_line_with_ts_level_logger_msg_and_extras(
    log_lines: Callable[[], list[dict[str, object]]],
) -> None:
    logging.getLogger("consumer.service.service").info(
        "sent %s", "SM123", extra={"topic": "events", "partition": 3, "offset": 42, "mapping": "welcome"}
    )
    [line] = log_lines()
    assert line["level"] == "INFO"
    assert line["logger"] == "consumer.service.service"
    assert line["msg"] == "sent SM123"
    assert (line["topic"], line["partition"], line["offset"], line["mapping"]) == ("events", 3, 42, "welcome")
    assert isinstance(line["ts"], str)
    assert line["ts"].endswith("+00:00")


def test_phone_numbers_are_masked_in_message_args_and_extras(
    log_lines: Callable[[], list[dict[str, object]]],
) -> None:
    logging.getLogger("x").warning(
        "failed to send to %s",
        "whatsapp:+14155550123",
        extra={"to": "+14155550123", "ctx": {"phones": ["+447700900123"]}},
    )
    [line] = log_lines()
    text = json.dumps(line)
    assert "5550123" not in text
    assert "900123" not in text
    assert line["msg"] == "failed to send to whatsapp:+1415*****23"
    assert line["to"] == "+1415*****23"
    assert line["ctx"] == {"phones": ["+4477******23"]}


def test_tracebacks_are_included_and_masked(log_lines: Callable[[], list[dict[str, object]]]) -> None:
    try:
        raise ValueError("bad number +14155550123")
    except ValueError:
        logging.getLogger("x").exception("render failed")
    [line] = log_lines()
    assert isinstance(line["exc"], str)
    assert "ValueError: bad number +1415*****23" in line["exc"]
    assert "5550123" not in line["exc"]


def test_secrets_are_never_printed(log_lines: Callable[[], list[dict[str, object]]]) -> None:
    logging.getLogger("x").info(
        "settings loaded",
        extra={
            "auth_token": "plain-text-token",
            "token_obj": SecretStr("hunter2"),
            "cfg": {"api_key_secret": "s3"},
        },
    )
    [line] = log_lines()
    text = json.dumps(line)
    assert "plain-text-token" not in text
    assert "hunter2" not in text
    assert "s3" not in text
    assert line["auth_token"] == "**********"


def test_records_from_child_loggers_are_masked_too(log_lines: Callable[[], list[dict[str, object]]]) -> None:
    logging.getLogger("consumer.twilio.client.deep").error("to +14155550123")
    [line] = log_lines()
    assert line["msg"] == "to +1415*****23"


def test_levels_below_the_configured_one_are_dropped() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    try:
        configure_logging("warning", stream=buffer)
        logging.getLogger("x").info("quiet")
        logging.getLogger("x").warning("loud")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert [json.loads(x)["msg"] for x in buffer.getvalue().splitlines()] == ["loud"]


def test_configuring_twice_replaces_the_handler_instead_of_doubling_lines() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        configure_logging("INFO", stream=first)
        configure_logging("INFO", stream=second)
        logging.getLogger("x").info("once")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


def test_an_unknown_level_is_a_settings_error_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="CONSUMER_LOG_LEVEL: unknown level 'VERBOSE'"):
        configure_logging("VERBOSE")
