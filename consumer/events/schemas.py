"""The Avro schemas in `schemas/` and the lossless mapping between Segment JSON and their records.

`SegmentEvent` keeps the envelope typed and every open object (properties, traits, context,
integrations) as a map of `JsonValue`, a record wrapping a recursive JSON union. Values that do not fit
a typed field (a numeric userId, an explicit null) go to `extra`, so `from_avro(to_avro(x))` gives
back `x` up to key order. Pure: reading the schema files happens once, at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema

from consumer.errors import SettingsError
from consumer.events.model import JSON

#: The reader schema every event is decoded into: the current version of the envelope.
READER_FILE = "segment_event.avsc"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"

_STRING_FIELDS = ("userId", "anonymousId", "event", "timestamp", "originalTimestamp", "sentAt", "receivedAt")
_OPEN_OBJECTS = ("properties", "traits", "context", "integrations")
_EXTERNAL_ID_STRINGS = ("id", "type", "channelType", "collection", "encoding")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class AvroSchema:
    """One parsed Avro schema and how it is identified on the wire."""

    name: str  # the record's full name, e.g. kafka_twilio.segment.SegmentEvent
    source: str  # file path or "registry id 7": for messages
    parsed: dict[str, Any]
    canonical: str  # Parsing Canonical Form
    fingerprint: bytes  # CRC-64-AVRO, 8 bytes little-endian (single-object encoding)
    # The schema as written, defaults and docs included: what a registry must be given, since the
    # canonical form drops defaults and a registry's compatibility check needs them.
    text: str = ""


def parse_schema(text: str | Mapping[str, Any], *, source: str) -> AvroSchema:
    """Parse an Avro schema (JSON text or object); raise ValueError naming `source` when invalid."""
    try:
        raw = json.loads(text) if isinstance(text, str) else dict(text)
        parsed = fastavro.parse_schema(raw)
        canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
        raise ValueError(f"{source}: not a valid Avro schema: {exc}") from exc
    fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise ValueError(f"{source}: the top-level Avro type must be a record")
    name = str(parsed["name"])
    return AvroSchema(
        name=name, source=source, parsed=parsed, canonical=canonical, fingerprint=fingerprint,
        text=json.dumps(raw, separators=(",", ":")),
    )  # fmt: skip


@dataclass(frozen=True)
class LocalSchemas:
    """Every `*.avsc` under a directory: the reader schema plus known writer schemas by fingerprint."""

    directory: Path
    reader: AvroSchema
    by_fingerprint: Mapping[bytes, AvroSchema]
    by_name: Mapping[str, AvroSchema]  # file stem ("segment_event.v1") and full record name

    @classmethod
    def load(cls, directory: Path) -> LocalSchemas:
        """Load `directory`; raise SettingsError naming the file and the fix when something is wrong."""
        reader_path = directory / READER_FILE
        if not reader_path.is_file():
            raise SettingsError(
                f"schemas directory {directory} has no {READER_FILE}: point the schemas directory "
                "setting at the project's schemas/ folder (or a copy of it)"
            )
        by_fingerprint: dict[bytes, AvroSchema] = {}
        by_name: dict[str, AvroSchema] = {}
        for path in sorted(directory.rglob("*.avsc")):
            try:
                schema = parse_schema(path.read_text(encoding="utf-8"), source=str(path))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise SettingsError(f"{exc}; fix or remove the file") from exc
            by_fingerprint.setdefault(schema.fingerprint, schema)
            by_name[path.name.removesuffix(".avsc")] = schema
            by_name.setdefault(schema.name, schema)
        reader = by_name[READER_FILE.removesuffix(".avsc")]
        # The current schema wins its full name over older versions sharing it.
        by_name[reader.name] = reader
        return cls(directory=directory, reader=reader, by_fingerprint=by_fingerprint, by_name=by_name)

    def named(self, name: str) -> AvroSchema:
        """A schema by file stem, full record name or file path; SettingsError when unknown."""
        if name in self.by_name:
            return self.by_name[name]
        path = Path(name)
        if path.is_file():
            try:
                return parse_schema(path.read_text(encoding="utf-8"), source=str(path))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise SettingsError(f"{exc}; fix the schemaless schema file") from exc
        known = ", ".join(sorted(self.by_name))
        raise SettingsError(f"unknown Avro schema {name!r}: use a file path or one of {known}")


def to_avro(event: Mapping[str, JSON]) -> dict[str, Any]:
    """Turn a Segment JSON object into a `SegmentEvent` record (current schema), losing nothing.

    Raises ValueError for values JSON cannot hold either (integers beyond 64 bits, non-string keys).
    """
    record: dict[str, Any] = {"type": "", "messageId": ""}
    extra: dict[str, JSON] = {}
    for key, value in event.items():
        if key in ("type", "messageId") or key in _STRING_FIELDS:
            if isinstance(value, str):
                record[key] = value
            else:
                extra[key] = value
        elif key == "version" and type(value) is int and _LONG_MIN <= value <= _LONG_MAX:
            record[key] = value
        elif key in _OPEN_OBJECTS and isinstance(value, Mapping):
            record[key] = _wrap_map(value, key)
        elif key == "external_ids" and isinstance(value, list) and all(isinstance(x, Mapping) for x in value):
            record[key] = [_external_id(x) for x in value]
        else:
            extra[key] = value
    record["extra"] = _wrap_map(extra, "")
    return record


def from_avro(record: Mapping[str, Any]) -> dict[str, JSON]:
    """Turn a decoded `SegmentEvent` record back into the Segment JSON object."""
    out: dict[str, JSON] = {"type": record["type"], "messageId": record["messageId"]}
    for key in _STRING_FIELDS:
        value = record.get(key)
        if value is not None:
            out[key] = value
    if record.get("version") is not None:
        out["version"] = record["version"]
    for key in _OPEN_OBJECTS:
        value = record.get(key)
        if value:
            out[key] = {k: _unwrap(v) for k, v in value.items()}
    ids = record.get("external_ids")
    if ids:
        out["external_ids"] = [_from_external_id(x) for x in ids]
    extra = record.get("extra")
    if extra:
        out.update((k, _unwrap(v)) for k, v in extra.items())
    return out


def _external_id(entry: Mapping[str, JSON]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    extra: dict[str, JSON] = {}
    for key, value in entry.items():
        fits = isinstance(value, str) or (key == "isSubscribed" and isinstance(value, bool))
        if fits and (key in _EXTERNAL_ID_STRINGS or key == "isSubscribed"):
            out[key] = value
        else:
            extra[key] = value
    out["extra"] = _wrap_map(extra, "external_ids[]")
    return out


def _from_external_id(entry: Mapping[str, Any]) -> dict[str, JSON]:
    out: dict[str, JSON] = {k: v for k, v in entry.items() if k != "extra" and v is not None}
    out.update((k, _unwrap(v)) for k, v in (entry.get("extra") or {}).items())
    return out


class _InvalidValue(ValueError):
    """A value JSON (and so the schema) cannot hold; `path` is filled in on the way out."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


def _wrap_map(value: Mapping[str, JSON], path: str) -> dict[str, dict[str, Any]]:
    try:
        return _wrap_items(value)
    except _InvalidValue as exc:
        where = ".".join(p for p in [path, *exc.path] if p) or "event"
        raise ValueError(f"{where}: {exc.problem}") from None


def _wrap_items(value: Mapping[str, JSON]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for k, v in value.items():
        if type(k) is not str:
            raise _InvalidValue(f"object key {k!r} is not a string")
        try:
            out[k] = _wrap(v)
        except _InvalidValue as exc:
            exc.path.insert(0, k)
            raise
    return out


def _wrap(value: JSON) -> dict[str, Any]:  # noqa: PLR0911 - one return per JSON type
    """Wrap a JSON value as a JsonValue record.

    The union branch is named with fastavro's tuple notation: without it fastavro validates every
    nested value once per candidate branch, which made encoding several times slower.
    """
    kind = type(value)
    if kind is str:
        return {"value": ("string", value)}
    if value is None:
        return {"value": None}
    if kind is bool:
        return {"value": ("boolean", value)}
    if kind is float:
        return {"value": ("double", value)}
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        if not _LONG_MIN <= value <= _LONG_MAX:
            raise _InvalidValue(f"integer {value} does not fit in 64 bits; send it as a string")
        return {"value": ("long", int(value))}
    if isinstance(value, Mapping):
        return {"value": ("map", _wrap_items(value))}
    if isinstance(value, list | tuple):
        items: list[dict[str, Any]] = []
        for i, x in enumerate(value):
            try:
                items.append(_wrap(x))
            except _InvalidValue as exc:
                exc.path.insert(0, f"[{i}]")
                raise
        return {"value": ("array", items)}
    if isinstance(value, str | float):
        return {"value": ("string" if isinstance(value, str) else "double", value)}
    raise _InvalidValue(f"{type(value).__name__} is not a JSON value")


def _unwrap(node: Mapping[str, Any]) -> JSON:
    value = node["value"]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value
