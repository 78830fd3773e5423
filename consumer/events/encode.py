"""Encode Segment JSON objects as record values: Avro (single-object, Confluent wire format through a
Schema Registry, schemaless) or JSON, as the decoder reads them; records keyed by who they are about.
`RecordEncoder` does the same for a user's own `.avsc` (JSON objects in, Avro of that schema out)."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro

from consumer.errors import SettingsError
from consumer.events import avro_fast
from consumer.events.model import JSON
from consumer.events.schemas import SINGLE_OBJECT_MAGIC, LocalSchemas, parse_schema, to_avro

ENCODINGS = ("single-object", "confluent", "schemaless", "json")


def _prefix(encoding: str, schema: Any, registry: Any, subject: str | None) -> bytes:
    """What comes before the Avro bytes: the single-object header, or the Confluent wire format's
    magic byte and schema id (registering the schema under `subject`); nothing for the others."""
    if encoding == "single-object":
        return bytes(SINGLE_OBJECT_MAGIC + schema.fingerprint)
    if encoding == "confluent":
        if registry is None or not subject:
            raise SettingsError("encoding 'confluent' needs a Schema Registry and a subject")
        return b"\x00" + _register(registry, subject, schema.text, schema.source)
    return b""


class Encoder:
    """Encode Segment JSON objects with the current schema; parsed schema and registry id cached."""

    def __init__(
        self, *, encoding: str, schemas_dir: Path, registry: Any = None, subject: str | None = None
    ) -> None:
        if encoding not in ENCODINGS:
            raise SettingsError(f"unknown encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
        self.encoding = encoding
        schema = LocalSchemas.load(schemas_dir).reader
        self._parsed = schema.parsed
        self._fast = schema.fingerprint.hex() == avro_fast.FINGERPRINT
        self._prefix = _prefix(encoding, schema, registry, subject)

    def encode(self, event: Mapping[str, JSON]) -> bytes:
        """The value bytes for one event; ValueError when it holds something JSON cannot."""
        if self.encoding == "json":
            return json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        if self._fast:
            try:
                return self._prefix + avro_fast.encode(event)
            except (avro_fast.Unsupported, UnicodeEncodeError, RecursionError):
                pass  # the general path below gives the precise error, or handles the odd type
        buf = io.BytesIO()
        buf.write(self._prefix)
        fastavro.schemaless_writer(buf, self._parsed, to_avro(event))
        return buf.getvalue()


class RecordEncoder:
    """Encode JSON objects as records of a user's own Avro schema (`produce --schema`): ISO-8601 text
    becomes the datetime a timestamp-millis/-micros field holds, everything else is written as given."""

    def __init__(
        self, *, encoding: str, schema_file: Path, registry: Any = None, subject: str | None = None
    ) -> None:
        if encoding not in ENCODINGS:
            raise SettingsError(f"unknown encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
        try:
            schema = parse_schema(schema_file.read_text(encoding="utf-8"), source=str(schema_file))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SettingsError(f"cannot use schema {schema_file}: {exc}; pass the producer's .avsc") from exc
        self.encoding = encoding
        self._parsed = schema.parsed
        self._prefix = _prefix(encoding, schema, registry, subject)

    def encode(self, record: Mapping[str, JSON]) -> bytes:
        """The value bytes of one record; ValueError naming the schema when it does not fit."""
        if self.encoding == "json":
            return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        names = self._parsed.get("__named_schemas") or {}
        buf = io.BytesIO()
        buf.write(self._prefix)
        try:
            fastavro.schemaless_writer(buf, self._parsed, _times(self._parsed, record, names))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"the record does not fit schema {self._parsed.get('name')}: {exc}") from None
        return buf.getvalue()


_TIME_TYPES = frozenset(
    {"timestamp-millis", "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros"}
)


def _times(node: Any, value: Any, names: Mapping[str, Any]) -> Any:  # noqa: PLR0911  one per schema kind
    """`value` with ISO-8601 text turned into datetimes wherever `node` (a schema) wants a timestamp."""
    node = names.get(node, node) if isinstance(node, str) else node
    if isinstance(node, list):
        for branch in node:
            converted = _times(branch, value, names)
            if converted is not value:
                return converted
        return value
    if not isinstance(node, dict):
        return value
    kind = node.get("type")
    if node.get("logicalType") in _TIME_TYPES and isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value  # fastavro's error names the field's type
    if kind == "record" and isinstance(value, Mapping):
        out = dict(value)
        for f in node["fields"]:
            if f["name"] in out:
                out[f["name"]] = _times(f["type"], out[f["name"]], names)
        return out
    if kind == "array" and isinstance(value, list):
        return [_times(node["items"], v, names) for v in value]
    if kind == "map" and isinstance(value, Mapping):
        return {k: _times(node["values"], v, names) for k, v in value.items()}
    return value


def _register(registry: Any, subject: str, text: str, source: str) -> bytes:
    from confluent_kafka.schema_registry import Schema

    from consumer.events.registry import describe_client

    try:
        schema_id = int(registry.register_schema(subject, Schema(text, "AVRO")))
    except Exception as exc:
        raise SettingsError(
            f"could not register {source} under subject {subject!r} at {describe_client(registry)}: "
            f"{exc}; check the registry URL and that the change is compatible (schemas/README.md)"
        ) from exc
    return schema_id.to_bytes(4, "big")


@functools.lru_cache(maxsize=32)
def _encoder(encoding: str, schemas_dir: Path, registry: Any, subject: str | None) -> Encoder:
    return Encoder(encoding=encoding, schemas_dir=schemas_dir, registry=registry, subject=subject)


def encode_event(
    event: Mapping[str, Any],
    *,
    encoding: str,
    schemas_dir: Path,
    registry: Any = None,
    subject: str | None = None,
) -> bytes:
    """Encode one Segment JSON object as a record value (encoders cached per configuration)."""
    return _encoder(encoding, Path(schemas_dir), registry, subject).encode(event)


def event_key(event: Mapping[str, Any], path: tuple[str | int, ...] | None = None) -> bytes | None:
    """The record key: userId, else anonymousId, so one person's events keep their order; for a user's
    own records, the value at `path` (e.g. customer.id) when one is given."""
    if path is not None:
        from consumer.events.paths import MISSING, read

        value = read(event, path)
        return None if value is MISSING or value in (None, "") else str(value).encode()
    for name in ("userId", "anonymousId"):
        value = event.get(name)
        if value not in (None, ""):
            return str(value).encode()
    return None
