"""Sources: how a record that is not Segment-shaped becomes the Event the mappings see.

A mapping file's `sources:` list says, per topic (and optionally per Avro record name or registry
subject), where an event's parts are in the user's own records:

    sources:
      - topic: shop.orders
        record: com.shop.OrderPlaced        # Avro records of this name (optional)
        event: Order Placed                 # a constant, or {path: kind}
        userId: customer.id
        messageId: order_id                 # default: topic/partition/offset
        timestamp: placed_at                # timestamp-millis/-micros or ISO-8601 text
        traits: {phone: customer.phone}     # a path, or names -> paths
        # properties: default, the whole record

Records whose writer schema is the Segment envelope, and topics without a source, decode exactly as
before. `to_event` is pure: it raises SourceFieldMissing (a counted skip, the path in its message)
when a record lacks what its source needs.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from consumer.errors import DecodeError, RecordRef, SourceFieldMissing
from consumer.events.model import JSON, Event
from consumer.events.paths import MISSING, parse_path, read
from consumer.events.schemas import AvroSchema

__all__ = ["EventPath", "Source", "SourceFieldMissing", "Sources", "to_event"]

SEGMENT_RECORD = "kafka_twilio.segment.SegmentEvent"


def _path(text: str) -> str:
    parse_path(text)  # ValueError -> a validation error naming the field
    return text


SourcePath = Annotated[str, StringConstraints(min_length=1), AfterValidator(_path)]
Parts = SourcePath | dict[str, SourcePath]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class EventPath(_Model):
    """The event name read from the record rather than a constant."""

    path: SourcePath


class Source(_Model):
    """One topic's (or one record type's) way from a record to an Event."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")] | None = Field(
        default=None, description="label in metrics and dead letters (default: the topic, /record if set)"
    )
    topic: Annotated[str, StringConstraints(min_length=1)]
    record: str | None = Field(default=None, description="Avro records of this full name only")
    subject: str | None = Field(
        default=None, description="registry subject whose versions paths are checked against at start-up"
    )
    schema_file: str | None = Field(
        default=None, alias="schema", description="local .avsc the paths are checked against"
    )
    type: Literal["track", "identify", "page", "screen", "group"] = "track"
    event: str | EventPath | None = None
    user_id: SourcePath | None = Field(default=None, alias="userId")
    anonymous_id: SourcePath | None = Field(default=None, alias="anonymousId")
    message_id: SourcePath | None = Field(
        default=None, alias="messageId", description="default: <topic>/<partition>/<offset>"
    )
    timestamp: SourcePath | None = None
    traits: Parts | None = None
    context: Parts | None = None
    properties: Parts | None = Field(default=None, description="default: the whole record")

    @property
    def label(self) -> str:
        return self.name or (f"{self.topic}/{self.record}" if self.record else self.topic)

    def paths(self) -> list[tuple[str, str]]:
        """Every (field, path) this source reads, e.g. ("traits.phone", "customer.phone")."""
        out: list[tuple[str, str]] = []
        if isinstance(self.event, EventPath):
            out.append(("event.path", self.event.path))
        for field, alias in (("user_id", "userId"), ("anonymous_id", "anonymousId"),
                             ("message_id", "messageId"), ("timestamp", "timestamp")):  # fmt: skip
            value = getattr(self, field)
            if value is not None:
                out.append((alias, value))
        for part in ("traits", "context", "properties"):
            value = getattr(self, part)
            if isinstance(value, str):
                out.append((part, value))
            elif isinstance(value, dict):
                out += [(f"{part}.{k}", v) for k, v in value.items()]
        return out


class Sources:
    """The sources of one mapping file, looked up by topic and writer record name."""

    def __init__(self, sources: tuple[Source, ...] = ()) -> None:
        self.all = sources
        self._by_topic: dict[str, list[Source]] = {}
        for source in sources:
            self._by_topic.setdefault(source.topic, []).append(source)
        self._subject_records: dict[str, frozenset[str]] = {}
        self._readers: dict[str, AvroSchema] = {}

    def __bool__(self) -> bool:
        return bool(self.all)

    def learn_subject(self, subject: str, records: frozenset[str]) -> None:
        """The record names a subject's versions carry: its source selects them (found at start-up)."""
        self._subject_records[subject] = records

    def learn_reader(self, label: str, schema: AvroSchema) -> None:
        """The newest schema known for a source: older writers of that record are read as it, so a
        field a later version added is there (its default) in every record (found at start-up)."""
        self._readers[label] = schema

    def reader_for(self, source: Source, writer: AvroSchema) -> dict[str, Any] | None:
        """The reader schema for `writer`'s records of `source`; None to read them as written."""
        reader = self._readers.get(source.label)
        if reader is None or reader.name != writer.name or reader.canonical == writer.canonical:
            return None
        return reader.parsed

    def pick(self, topic: str, record: str | None) -> Source | None:
        """The source for a record of `topic`: by its Avro record name (None for JSON), else the topic's
        source that names no record (for JSON also the topic's only source); None when the record
        decodes as Segment (no source applies)."""
        candidates = self._by_topic.get(topic)
        if not candidates or record == SEGMENT_RECORD:
            return None
        fallback = None
        for source in candidates:
            names = (
                {source.record} if source.record else self._subject_records.get(source.subject or "", set())
            )
            if record is not None and record in names:
                return source
            if not source.record and not (source.subject and source.subject in self._subject_records):
                fallback = fallback or source
        if fallback is None and record is None and len(candidates) == 1:
            return candidates[0]  # JSON carries no record name: a topic's only source reads it
        return fallback

    def for_json(self, topic: str, data: Mapping[str, Any]) -> Source | None:
        """The source for a JSON record of `topic`. JSON names no schema, so a Segment envelope (a
        string `type` and `messageId`) stays a Segment event."""
        if topic not in self._by_topic:
            return None
        if isinstance(data.get("type"), str) and isinstance(data.get("messageId"), str):
            return None
        return self.pick(topic, None)

    def for_writer(self, topic: str, writer: AvroSchema) -> Source | None:
        """The source for an Avro record of `topic` written with `writer`: None for Segment records and
        topics without sources; DecodeError `no_source` when the topic's sources read other records."""
        if topic not in self._by_topic or writer.name == SEGMENT_RECORD:
            return None
        source = self.pick(topic, writer.name)
        if source is None:
            named = ", ".join(sorted({s.record for s in self._by_topic[topic] if s.record}))
            raise DecodeError(
                f"record {writer.name} ({writer.source}) on topic {topic!r} matches no source (its "
                f"sources read {named}); add a source for it to the mapping file",
                reason="no_source",
            )
        return source


def to_event(record: Mapping[str, Any], source: Source, ref: RecordRef) -> Event:
    """The Event `source` makes of `record` (Avro values made JSON); SourceFieldMissing naming the path,
    DecodeError for a record nested too deeply; either names the source."""
    try:
        return _to_event(record, source, ref)
    except DecodeError as error:
        error.source = source.label
        raise
    except RecursionError:
        deep = DecodeError(
            "the record nests values too deeply to decode; flatten it", reason="schema_mismatch"
        )
        deep.source = source.label
        raise deep from None


def _to_event(record: Mapping[str, Any], source: Source, ref: RecordRef) -> Event:
    data = json_value(record)
    out: dict[str, JSON] = {"type": source.type}
    if isinstance(source.event, EventPath):
        out["event"] = _text(data, source.event.path, source, "event")
    elif source.event is not None:
        out["event"] = source.event
    message_id = _text(data, source.message_id, source, "messageId") if source.message_id else None
    out["messageId"] = message_id or f"{ref.topic}/{ref.partition}/{ref.offset}"
    for key, path in (("userId", source.user_id), ("anonymousId", source.anonymous_id)):
        value = _get(data, path)
        if value is not MISSING and value not in (None, ""):
            out[key] = str(value)
    if source.timestamp:
        out["timestamp"] = _timestamp(_get(data, source.timestamp), source)
    for part in ("traits", "context", "properties"):
        spec = getattr(source, part)
        value = data if spec is None and part == "properties" else _part(data, spec)
        if value:
            out[part] = value
    return dataclasses.replace(Event.from_segment(out), source=source.label)


def _get(data: Any, path: str | None) -> Any:
    return MISSING if path is None else read(data, parse_path(path))


def _missing(source: Source, field: str, path: str, what: str = "has no value at") -> SourceFieldMissing:
    return SourceFieldMissing(
        f"source {source.label!r}: {field}: the record {what} {path!r}; fix the producer or the "
        "source's path (the schema check at start-up reports paths that exist in no version)",
        reason="missing_field",
    )


def _text(data: Any, path: str | None, source: Source, field: str) -> str:
    value = _get(data, path)
    if value is MISSING or value is None or value == "":
        raise _missing(source, field, str(path))
    if isinstance(value, dict | list):
        raise _missing(source, field, str(path), "holds an object or list, not text, at")
    return str(value)


def _timestamp(value: Any, source: Source) -> str:
    path = str(source.timestamp)
    if value is MISSING or value is None:
        raise _missing(source, "timestamp", path)
    if isinstance(value, str):
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            raise _missing(source, "timestamp", path, "holds no ISO-8601 time") from None
        return value
    raise _missing(
        source, "timestamp", path,
        "holds a number, not a time (give it the timestamp-millis logical type, or write ISO-8601), at",
    )  # fmt: skip


def _part(data: Any, spec: str | dict[str, str] | None) -> dict[str, JSON]:
    if spec is None:
        return {}
    if isinstance(spec, str):
        value = _get(data, spec)
        return dict(value) if isinstance(value, Mapping) else {}
    picked = {name: _get(data, path) for name, path in spec.items()}
    return {name: value for name, value in picked.items() if value is not MISSING}


def json_value(value: Any) -> JSON:  # noqa: PLR0911  one return per kind of value
    """An Avro-decoded value as JSON: times as ISO-8601 (UTC `Z`), decimals and UUIDs as text, bytes
    as base64. fastavro hands logical types over as Python objects; templates and dead letters need JSON."""
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() == dt.timedelta(0):
            return value.isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)
