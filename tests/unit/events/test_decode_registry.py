"""The Schema Registry path: mock:// round trips, caching by id, retries, unreachable registries."""

from __future__ import annotations

import io
import socket
import uuid
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer.errors import DecodeError, RecordRef, RegistryError
from consumer.events.decode import Decoder
from consumer.events.encode import encode_event
from consumer.events.registry import RegistrySchemas, make_registry_client, redact_url
from consumer.events.schemas import LocalSchemas, to_avro
from tests.unit._fixtures import SCHEMAS_DIR, load

EVENT = load("event_triggered_journey_step")


class CountingClient:
    """Delegates to a real (mock://) confluent-kafka client and counts the look-ups."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def get_schema(self, schema_id: int) -> Any:
        self.calls += 1
        return self.inner.get_schema(schema_id)


class FailingClient:
    """A registry client whose every look-up fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def get_schema(self, schema_id: int) -> Any:
        self.calls += 1
        raise self.error


def test_confluent_wire_format_decodes_through_the_registry() -> None:
    registry = make_registry_client("mock://registry-round-trip")
    value = encode_event(
        EVENT, encoding="confluent", schemas_dir=SCHEMAS_DIR, registry=registry, subject="t-value"
    )
    assert value[0] == 0
    event = Decoder(schemas_dir=SCHEMAS_DIR, encoding="confluent", registry=registry).decode(value)
    assert event.journey is not None
    assert event.journey.journey_id == "jou_31x"


def test_mock_clients_are_shared_per_url() -> None:
    assert make_registry_client("mock://shared") is make_registry_client("mock://shared")
    assert make_registry_client("mock://shared") is not make_registry_client("mock://other")


def test_schemas_are_fetched_once_per_id() -> None:
    registry = make_registry_client("mock://registry-cache")
    value = encode_event(
        EVENT, encoding="confluent", schemas_dir=SCHEMAS_DIR, registry=registry, subject="c-value"
    )
    counting = CountingClient(registry)
    decoder = Decoder(schemas_dir=SCHEMAS_DIR, registry=counting)
    for _ in range(5):
        decoder.decode(value)
    assert counting.calls == 1


def test_an_older_registered_writer_is_resolved_against_the_current_reader() -> None:
    registry = make_registry_client("mock://registry-v1")
    v1 = LocalSchemas.load(SCHEMAS_DIR).by_name["segment_event.v1"]
    schema_id = registry.register_schema("old-value", Schema(v1.canonical, "AVRO"))
    record = {k: v for k, v in to_avro(EVENT).items() if k not in ("external_ids", "extra")}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, v1.parsed, record)
    value = b"\x00" + schema_id.to_bytes(4, "big") + buf.getvalue()
    event = Decoder(schemas_dir=SCHEMAS_DIR, registry=registry).decode(value)
    assert event.journey is not None
    assert event.journey.step_name == "Reminder"
    assert event.external_ids == ()


def test_schema_id_in_headers_is_read_by_guid() -> None:
    registry = make_registry_client("mock://registry-guid")
    canonical = LocalSchemas.load(SCHEMAS_DIR).reader.canonical
    guid = registry.register_schema_full_response("h-value", Schema(canonical, "AVRO")).guid
    plain = encode_event(EVENT, encoding="schemaless", schemas_dir=SCHEMAS_DIR)
    headers = [("__value_schema_id", b"\x01" + uuid.UUID(guid).bytes)]
    event = Decoder(schemas_dir=SCHEMAS_DIR, registry=registry).decode(plain, headers)
    assert event.message_id == EVENT["messageId"]


def test_a_malformed_schema_id_header_is_a_bad_magic_byte() -> None:
    decoder = Decoder(schemas_dir=SCHEMAS_DIR, registry=make_registry_client("mock://registry-guid"))
    with pytest.raises(DecodeError) as info:
        decoder.decode(b"\x02x", [("__value_schema_id", b"\x07")])
    assert info.value.reason == "bad_magic_byte"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_registry_is_retried_with_backoff_then_named_without_credentials() -> None:
    port = _closed_port()
    client = make_registry_client(f"http://alice:s3cret@127.0.0.1:{port}")
    sleeps: list[float] = []
    registry = RegistrySchemas(client, attempts=4, base_delay_s=0.1, sleep=sleeps.append)
    decoder = Decoder(schemas_dir=SCHEMAS_DIR, registry=registry)
    with pytest.raises(RegistryError) as info:
        decoder.decode(b"\x00\x00\x00\x00\x01\x02", record=RecordRef("t", 0, 9))
    error = info.value
    assert error.reason == "registry_unavailable"
    assert sleeps == [0.1, 0.2, 0.4]
    assert f"http://127.0.0.1:{port}" in error.message
    assert "after 4 attempts" in error.message
    assert "s3cret" not in str(error)
    assert "alice" not in str(error)
    assert error.record == RecordRef("t", 0, 9)


def test_server_errors_are_retried_and_not_found_is_not() -> None:
    flaky = FailingClient(SchemaRegistryError(503, 50301, "unavailable"))
    with pytest.raises(RegistryError):
        RegistrySchemas(flaky, attempts=3, sleep=lambda _: None).lookup(1)
    assert flaky.calls == 3
    missing = FailingClient(SchemaRegistryError(404, 40403, "Schema not found"))
    with pytest.raises(DecodeError) as info:
        RegistrySchemas(missing, attempts=3, sleep=lambda _: None).lookup(1)
    assert (info.value.reason, missing.calls) == ("unknown_schema", 1)
    assert not isinstance(info.value, RegistryError)


def test_refused_credentials_are_not_retried() -> None:
    denied = FailingClient(SchemaRegistryError(401, 40101, "Unauthorized"))
    with pytest.raises(RegistryError, match="refused the credentials"):
        RegistrySchemas(denied, attempts=3, sleep=lambda _: None).lookup(1)
    assert denied.calls == 1


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("http://u:p@reg:8081", "http://reg:8081"),
        ("https://reg.example/path", "https://reg.example/path"),
        ("http://a:b@h1:1,http://h2:2", "http://h1:1,http://h2:2"),
    ],
)
def test_urls_are_redacted_for_messages(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
