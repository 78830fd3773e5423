"""Sources: a user's own record -> the Event the mappings see; which source reads which record; the
decoder on a topic with sources (Avro of another schema, JSON), and Segment records left as they were."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest

from consumer.errors import DecodeError, RecordRef, SourceFieldMissing
from consumer.events.decode import Decoder
from consumer.events.encode import encode_event
from consumer.events.model import Event
from consumer.events.schemas import SINGLE_OBJECT_MAGIC, parse_schema
from consumer.events.sources import SEGMENT_RECORD, Source, Sources, json_value, to_event
from tests.unit._fixtures import SCHEMAS_DIR

ROOT = Path(__file__).resolve().parents[3]
SHOP_V2 = ROOT / "examples" / "schemas" / "com.shop.OrderPlaced.v2.avsc"
SHOP_V1 = ROOT / "examples" / "schemas" / "com.shop.OrderPlaced.v1.avsc"
REF = RecordRef("shop.orders", 2, 41)
PLACED = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)


def source(**fields: Any) -> Source:
    return Source.model_validate({"topic": "shop.orders", "event": "Order Placed", **fields})


def record(**extra: Any) -> dict[str, Any]:
    customer = {"id": "c-17", "phone": "+14155550142", "locale": None}
    return {"order_id": "SO-1", "customer": customer, "total": 42.5, "placed_at": PLACED, **extra}


def test_a_record_becomes_a_track_event_with_the_whole_record_as_properties() -> None:
    event = to_event(record(), source(userId="customer.id", timestamp="placed_at"), REF)
    assert (event.type, event.event, event.user_id, event.source) == (
        "track",
        "Order Placed",
        "c-17",
        "shop.orders",
    )
    assert event.timestamp == "2026-11-28T10:00:00Z"
    assert event.properties["customer"]["phone"] == "+14155550142"
    assert event.message_id == "shop.orders/2/41", "derived from the coordinates: de-duplication still works"


def test_each_part_can_be_a_path_or_names_to_paths() -> None:
    src = source(
        event={"path": "kind"}, messageId="order_id", anonymousId="customer.phone",
        traits={"phone": "customer.phone", "locale": "customer.locale", "gone": "nowhere"},
        context="customer", properties={"total": "total"}, type="identify", name="orders",
    )  # fmt: skip
    event = to_event(record(kind="Order Shipped"), src, REF)
    assert (event.type, event.event, event.message_id, event.anonymous_id) == (
        "identify", "Order Shipped", "SO-1", "+14155550142",
    )  # fmt: skip
    assert dict(event.traits) == {"phone": "+14155550142", "locale": None}
    assert event.context["id"] == "c-17"
    assert dict(event.properties) == {"total": 42.5}
    assert event.source == "orders"


@pytest.mark.parametrize(
    ("fields", "data", "says"),
    [
        ({"messageId": "order_ref"}, record(), "messageId: the record has no value at 'order_ref'"),
        ({"event": {"path": "kind"}}, record(), "event: the record has no value at 'kind'"),
        ({"event": {"path": "customer"}}, record(), "holds an object or list, not text"),
        ({"timestamp": "placed"}, record(), "timestamp: the record has no value at 'placed'"),
        ({"timestamp": "total"}, record(), "holds a number, not a time"),
        ({"timestamp": "order_id"}, record(), "holds no ISO-8601 time"),
    ],
)
def test_a_record_without_what_its_source_reads_is_a_counted_skip_naming_the_path(
    fields: dict[str, Any], data: dict[str, Any], says: str
) -> None:
    with pytest.raises(SourceFieldMissing) as missing:
        to_event(data, source(**fields), REF)
    assert missing.value.reason == "missing_field"
    assert says in missing.value.message
    assert "source 'shop.orders'" in missing.value.message


def test_iso_timestamps_pass_and_avro_logical_values_become_json() -> None:
    assert to_event(
        record(placed_at="2026-11-28T11:00:00+01:00"), source(timestamp="placed_at"), REF
    ).timestamp == ("2026-11-28T11:00:00+01:00")
    some = uuid.UUID(int=7)
    values = {"d": decimal.Decimal("19.90"), "u": some, "b": b"\x00\x01", "day": dt.date(2026, 1, 2)}
    assert json_value(values) == {"d": "19.90", "u": str(some), "b": "AAE=", "day": "2026-01-02"}


def test_which_source_reads_a_record() -> None:
    named = source(record="com.shop.OrderPlaced", name="placed")
    by_subject = source(subject="shop.orders-value", name="by-subject")
    anything = source(name="any")
    sources = Sources((named, by_subject, anything))
    assert sources.pick("shop.orders", "com.shop.OrderPlaced") is named
    assert sources.pick("shop.orders", "com.shop.Refund") is by_subject  # its subject not fetched yet
    sources.learn_subject("shop.orders-value", frozenset({"com.shop.Refund"}))
    assert sources.pick("shop.orders", "com.shop.Refund") is by_subject
    assert sources.pick("shop.orders", "com.shop.Other") is anything
    assert sources.pick("shop.orders", None) is anything  # JSON
    assert sources.pick("shop.orders", SEGMENT_RECORD) is None  # Segment records stay Segment
    assert sources.pick("segment-events", "com.shop.OrderPlaced") is None
    only = Sources((named,))
    assert only.pick("shop.orders", None) is named, "JSON has no record name: the topic's only source"
    assert only.pick("shop.orders", "com.shop.Other") is None


@pytest.fixture
def schemas_dir(tmp_path: Path) -> Path:
    """The project's schemas plus the shop's, as CONSUMER_SCHEMAS_DIR would hold them."""
    shutil.copytree(SCHEMAS_DIR, tmp_path / "schemas")
    shutil.copy(SHOP_V2, tmp_path / "schemas" / SHOP_V2.name)
    shutil.copy(SHOP_V1, tmp_path / "schemas" / SHOP_V1.name)
    return tmp_path / "schemas"


def shop_value(data: dict[str, Any], file: Path = SHOP_V2) -> bytes:
    schema = parse_schema(file.read_text(), source=str(file))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, data)
    return SINGLE_OBJECT_MAGIC + schema.fingerprint + buf.getvalue()


def shop_record(**extra: Any) -> dict[str, Any]:
    return {**record(), "currency": "EUR", "coupon_code": None, **extra}


def test_the_decoder_reads_a_topics_own_avro_records_with_their_source(schemas_dir: Path) -> None:
    decoder = Decoder(schemas_dir=schemas_dir)
    decoder.use_sources(
        Sources((source(record="com.shop.OrderPlaced", timestamp="placed_at", name="placed"),))
    )
    event = decoder.decode(shop_value(shop_record(coupon_code="WELCOME10")), record=REF)
    assert (event.event, event.source, event.timestamp) == ("Order Placed", "placed", "2026-11-28T10:00:00Z")
    assert event.properties["coupon_code"] == "WELCOME10"
    assert event.properties["placed_at"] == "2026-11-28T10:00:00Z"


def test_segment_records_and_topics_without_sources_decode_as_before(schemas_dir: Path) -> None:
    decoder = Decoder(schemas_dir=schemas_dir)
    decoder.use_sources(Sources((source(),)))
    segment = {"type": "track", "event": "Order Completed", "messageId": "m-1", "userId": "u-1"}
    for value in (encode_event(segment, encoding="single-object", schemas_dir=schemas_dir),
                  json.dumps(segment).encode()):  # fmt: skip
        assert decoder.decode(value, record=RecordRef("segment-events", 0, 1)) == Event.from_segment(segment)
    avro = encode_event(segment, encoding="single-object", schemas_dir=schemas_dir)
    assert decoder.decode(avro, record=REF) == Event.from_segment(segment), "its schema says it is Segment"
    with pytest.raises(DecodeError) as mismatch:
        decoder.decode(shop_value(shop_record()), record=RecordRef("segment-events", 0, 1))
    assert mismatch.value.reason == "schema_mismatch"


def test_json_records_of_a_source_topic_go_through_the_source(schemas_dir: Path) -> None:
    decoder = Decoder(schemas_dir=schemas_dir)
    decoder.use_sources(Sources((source(messageId="order_id"),)))
    value = json.dumps({"order_id": "SO-9", "customer": {"phone": "+14155550142"}}).encode()
    event = decoder.decode(value, record=REF)
    assert (event.message_id, event.properties["customer"]["phone"]) == ("SO-9", "+14155550142")
    with pytest.raises(SourceFieldMissing) as missing:
        decoder.decode(b'{"customer": {}}', record=REF)
    assert missing.value.source == "shop.orders"


def test_an_avro_record_no_source_of_its_topic_reads_is_dead_lettered_naming_the_sources(
    schemas_dir: Path,
) -> None:
    decoder = Decoder(schemas_dir=schemas_dir)
    decoder.use_sources(Sources((source(record="com.shop.Refund"),)))
    with pytest.raises(DecodeError) as error:
        decoder.decode(shop_value(shop_record()), record=REF)
    assert error.value.reason == "no_source"
    assert "record com.shop.OrderPlaced" in error.value.message
    assert "its sources read com.shop.Refund" in error.value.message


def test_older_writers_are_read_as_the_newest_known_version(schemas_dir: Path) -> None:
    decoder = Decoder(schemas_dir=schemas_dir)
    sources = Sources((source(record="com.shop.OrderPlaced"),))
    old = shop_value({k: v for k, v in shop_record().items() if k != "coupon_code"}, SHOP_V1)
    decoder.use_sources(sources)
    assert "coupon_code" not in decoder.decode(old, record=REF).properties, "no reader known: as written"
    sources.learn_reader("shop.orders/com.shop.OrderPlaced", parse_schema(SHOP_V2.read_text(), source="v2"))
    assert decoder.decode(old, record=REF).properties["coupon_code"] is None, "v2's default"
