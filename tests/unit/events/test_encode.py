"""The fast Avro encoder writes exactly the bytes fastavro writes for the same event."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings

from consumer.events import avro_fast as avro_encode
from consumer.events.encode import Encoder
from consumer.events.schemas import LocalSchemas, to_avro
from tests.unit._fixtures import SCHEMAS_DIR, all_fixtures, load
from tests.unit.events.test_decode_fuzz import EVENTS

READER = LocalSchemas.load(SCHEMAS_DIR).reader


def _fastavro(event: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, READER.parsed, to_avro(event))
    return buf.getvalue()


def test_the_fast_encoder_targets_the_current_schema() -> None:
    assert READER.fingerprint.hex() == avro_encode.FINGERPRINT, (
        "schemas/segment_event.avsc changed: update consumer/avro_encode.py and its FINGERPRINT"
    )


@pytest.mark.parametrize("name", all_fixtures())
def test_fixture_bytes_match_fastavro(name: str) -> None:
    assert avro_encode.encode(load(name)) == _fastavro(load(name))


@settings(max_examples=150, deadline=None)
@given(event=EVENTS)
def test_any_event_bytes_match_fastavro(event: dict[str, Any]) -> None:
    assert avro_encode.encode(event) == _fastavro(event)


class Props(dict[str, Any]):
    """A dict subclass: the fast path hands it to the general one."""


def test_unusual_types_fall_back_to_the_general_encoder() -> None:
    event = {"type": "track", "messageId": "m", "userId": "u", "properties": Props(a=1)}
    with pytest.raises(avro_encode.Unsupported):
        avro_encode.encode(event)
    value = Encoder(encoding="schemaless", schemas_dir=SCHEMAS_DIR).encode(event)
    assert value == _fastavro(event)
