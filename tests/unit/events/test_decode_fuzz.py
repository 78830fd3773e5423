"""Property tests: no bytes make decode raise anything but DecodeError; any JSON event round-trips."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.errors import DecodeError
from consumer.events.decode import Decoder
from consumer.events.encode import encode_event
from consumer.events.model import Event
from consumer.events.registry import make_registry_client
from consumer.events.schemas import LocalSchemas
from tests.unit._fixtures import SCHEMAS_DIR, all_fixtures, load

REGISTRY = make_registry_client("mock://fuzz")
READER = LocalSchemas.load(SCHEMAS_DIR).reader
VALID = [encode_event(load(n), encoding="confluent", schemas_dir=SCHEMAS_DIR, registry=REGISTRY,
                      subject="fuzz-value") for n in all_fixtures()]  # fmt: skip
SCHEMA_ID = VALID[0][:5]
DECODERS = [
    Decoder(schemas_dir=SCHEMAS_DIR, registry=REGISTRY),
    Decoder(schemas_dir=SCHEMAS_DIR, encoding="single-object"),
    Decoder(schemas_dir=SCHEMAS_DIR, encoding="schemaless", schemaless_schema="segment_event"),
    Decoder(schemas_dir=SCHEMAS_DIR, encoding="schemaless", schemaless_schema="segment_event.v1"),
    Decoder(schemas_dir=SCHEMAS_DIR, encoding="json"),
    Decoder(schemas_dir=SCHEMAS_DIR, encoding="confluent", registry=REGISTRY),
]
PREFIXES = [b"", b"\x00", SCHEMA_ID, b"\xc3\x01", b"\xc3\x01" + READER.fingerprint, b"{", b'{"type":']
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _decode_all(value: bytes) -> None:
    errors: list[DecodeError] = []
    for decoder in DECODERS:
        try:
            assert isinstance(decoder.decode(value), Event)
        except DecodeError as error:
            errors.append(error)
    assert all(e.reason and e.message for e in errors)


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_a_decode_error(prefix: bytes, body: bytes) -> None:
    _decode_all(prefix + body)


@FUZZ
@given(data=st.data())
def test_corrupted_valid_records_raise_nothing_but_a_decode_error(data: st.DataObject) -> None:
    value = bytearray(data.draw(st.sampled_from(VALID)))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(value) - 1))
        value[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(value)))
    _decode_all(bytes(value[:cut]))


KEYS = st.text(max_size=8)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)
OBJECTS = st.dictionaries(KEYS, JSON_VALUES, max_size=5)
EVENTS = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "identify", "page"]), "messageId": st.text(min_size=1, max_size=20),
     "userId": st.text(min_size=1, max_size=10) | st.integers(0, 10**6)},
    optional={"anonymousId": st.none() | st.text(max_size=5), "event": st.text(max_size=10) | st.none(),
              "timestamp": st.text(max_size=30), "version": st.integers(0, 3) | st.text(max_size=2),
              "properties": OBJECTS, "traits": OBJECTS, "context": OBJECTS, "integrations": OBJECTS,
              "external_ids": st.lists(OBJECTS, max_size=3) | st.lists(JSON_VALUES, max_size=3),
              "someCustomTopLevel": JSON_VALUES},
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(event=EVENTS, encoding=st.sampled_from(["single-object", "confluent", "json"]))
def test_any_segment_event_decodes_to_the_same_event_as_its_json(
    event: dict[str, Any], encoding: str
) -> None:
    value = encode_event(
        event, encoding=encoding, schemas_dir=SCHEMAS_DIR, registry=REGISTRY, subject="fuzz-value"
    )
    assert DECODERS[0].decode(value) == Event.from_segment(event)
