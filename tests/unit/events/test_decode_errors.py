"""Bad input gives a typed DecodeError with a reason, the record's coordinates and an actionable message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from consumer.errors import DecodeError, RecordRef, SettingsError
from consumer.events.decode import Decoder
from consumer.events.encode import encode_event
from consumer.events.registry import make_registry_client
from tests.unit._fixtures import SCHEMAS_DIR, load

EVENT = load("audience_entered_track")
SINGLE = encode_event(EVENT, encoding="single-object", schemas_dir=SCHEMAS_DIR)
REF = RecordRef("events", 3, 42)


def _decode(value: bytes | None, encoding: str = "auto", **kwargs: Any) -> DecodeError:
    decoder = Decoder(schemas_dir=SCHEMAS_DIR, encoding=encoding, **kwargs)
    with pytest.raises(DecodeError) as info:
        decoder.decode(value, record=REF)
    return info.value


def _invalid_utf8_avro() -> bytes:
    at = SINGLE.index(b"personas_2hX0aXk1")
    return SINGLE[:at] + b"\xff" + SINGLE[at + 1 :]


@pytest.mark.parametrize(
    ("value", "reason", "says"),
    [
        (b"", "truncated", "empty"),
        (b"\x00\x00\x01", "truncated", "5-byte Confluent header"),
        (b"\xc3\x01\x01\x02", "truncated", "10-byte"),
        (b"\xc3", "truncated", "1 byte"),
        (SINGLE[: len(SINGLE) // 2], "truncated", "ends early"),
        (SINGLE + b"\x00\x00", "schema_mismatch", "2 bytes left over"),
        (b"\x05garbage", "bad_magic_byte", "0x05"),
        (b"\xc3\x02" + SINGLE[2:], "bad_magic_byte", "0xc3"),
        (b"\xc3\x01" + b"\x01" * 8 + SINGLE[10:], "unknown_schema", "0101010101010101"),
        (b"\x00\x00\x00\x00\x07" + SINGLE[10:], "unknown_schema", "no registry is configured"),
        (_invalid_utf8_avro(), "invalid_utf8", "UTF-8"),
        (b'{"type": "track", "messageId": "\xff"}', "invalid_utf8", "UTF-8"),
        (b'{"type": "track",', "invalid_json", "not valid JSON"),
        (b'{"type": "track", "x": NaN}', "invalid_json", "NaN"),
        (b"{" + b'"a":[' * 100_000 + b"1" + b"]" * 100_000 + b"}", "invalid_json", "JSON"),
        (b'{"messageId": "m", "userId": "u"}', "not_an_event", "'type'"),
        (b'{"type": "track", "userId": "u"}', "not_an_event", "'messageId'"),
        (b'{"type": "track", "messageId": "m"}', "not_an_event", "neither userId nor anonymousId"),
        (None, "not_an_event", "tombstone"),
    ],
)
def test_bad_bytes_raise_a_decode_error_naming_the_problem(
    value: bytes | None, reason: str, says: str
) -> None:
    error = _decode(value)
    assert error.reason == reason
    assert says in error.message
    assert error.record == REF
    assert str(error).endswith("(record events[3]@42)")
    assert error.stage == "decode"


def test_a_json_array_is_not_an_event() -> None:
    assert _decode(b"[1, 2]", encoding="json").reason == "not_an_event"


def test_huge_payloads_are_refused_before_parsing() -> None:
    error = _decode(b"{" + b" " * 2_000_000 + b"}")
    assert error.reason == "too_large"
    assert "2000002 bytes" in error.message


def test_the_size_limit_is_configurable() -> None:
    assert _decode(SINGLE, max_bytes=10).reason == "too_large"


@pytest.mark.parametrize(
    ("encoding", "value"),
    [("confluent", b"\xc3\x01" + SINGLE[2:]), ("single-object", b"\x00" * 20), ("confluent", b'{"a": 1}')],
)
def test_a_forced_encoding_rejects_other_framings(encoding: str, value: bytes) -> None:
    registry = make_registry_client("mock://errors")
    assert _decode(value, encoding=encoding, registry=registry).reason == "bad_magic_byte"


def test_an_unknown_registry_id_is_an_unknown_schema() -> None:
    registry = make_registry_client("mock://errors-unknown")
    error = _decode(b"\x00\x00\x00\x03\xe7" + SINGLE[10:], registry=registry)
    assert error.reason == "unknown_schema"
    assert "id 999" in error.message


def _register(url: str, schema: dict[str, Any] | str, kind: str = "AVRO") -> tuple[Any, int]:
    registry = make_registry_client(url)
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return registry, registry.register_schema("events-value", Schema(text, kind))


def test_an_incompatible_writer_schema_is_a_schema_mismatch() -> None:
    fields = [{"name": "type", "type": "string"}, {"name": "messageId", "type": "long"}]
    writer = {"type": "record", "name": "SegmentEvent", "namespace": "kafka_twilio.segment", "fields": fields}
    registry, schema_id = _register("mock://errors-mismatch", writer)
    value = b"\x00" + schema_id.to_bytes(4, "big") + b"\x0atrack\x02"
    error = _decode(value, registry=registry)
    assert error.reason == "schema_mismatch"
    assert "schemas/README.md" in error.message


def test_a_writer_schema_of_another_record_is_a_schema_mismatch() -> None:
    writer = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}
    registry, schema_id = _register("mock://errors-other", writer)
    error = _decode(b"\x00" + schema_id.to_bytes(4, "big") + b"\x02x", registry=registry)
    assert error.reason == "schema_mismatch"


def test_a_non_avro_registry_schema_is_a_schema_mismatch() -> None:
    registry, schema_id = _register("mock://errors-json", '{"type": "object"}', kind="JSON")
    error = _decode(b"\x00" + schema_id.to_bytes(4, "big") + b"{}", registry=registry)
    assert error.reason == "schema_mismatch"
    assert "JSON schema, not Avro" in error.message


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"encoding": "protobuf"}, "unknown encoding"),
        ({"encoding": "confluent"}, "needs a Schema Registry"),
        ({"encoding": "schemaless"}, "needs the writer schema"),
        ({"encoding": "schemaless", "schemaless_schema": "nope"}, "unknown Avro schema 'nope'"),
        ({"schemas_dir": Path("/nonexistent")}, "has no segment_event.avsc"),
    ],
)
def test_bad_configuration_is_a_settings_error_at_start_up(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        Decoder(**{"schemas_dir": SCHEMAS_DIR, **kwargs})


def test_an_invalid_schema_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "segment_event.avsc").write_text((SCHEMAS_DIR / "segment_event.avsc").read_text())
    (tmp_path / "broken.avsc").write_text('{"type": "record", "name": "X", "fields": [{"name": "a"}]}')
    with pytest.raises(SettingsError, match=r"broken\.avsc: not a valid Avro schema"):
        Decoder(schemas_dir=tmp_path)


@pytest.mark.parametrize("external_ids", [5, True, 1.5, "x", {"id": "+14155550123"}])
def test_external_ids_that_are_not_a_list_are_dropped_not_a_crash(external_ids: Any) -> None:
    data = {"type": "track", "messageId": "m", "userId": "u", "external_ids": external_ids}
    event = Decoder(schemas_dir=SCHEMAS_DIR).decode(json.dumps(data).encode())
    assert event.external_ids == ()


def test_a_lone_escaped_surrogate_in_json_is_a_decode_error_not_a_later_send_failure() -> None:
    value = b'{"type": "track", "messageId": "m", "userId": "u", "properties": {"name": "Jo\\ud800"}}'
    error = _decode(value)
    assert error.reason == "invalid_json"
    assert "surrogate" in error.message


def test_an_escaped_surrogate_pair_is_an_ordinary_character() -> None:
    value = b'{"type": "track", "messageId": "m", "userId": "u", "properties": {"name": "\\ud83d\\ude00"}}'
    event = Decoder(schemas_dir=SCHEMAS_DIR).decode(value)
    assert event.properties["name"] == "\N{GRINNING FACE}"
