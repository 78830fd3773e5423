"""Decode stage: a record's bytes (and headers) -> a frozen `Event`, or a DecodeError.

Encodings (`auto` detects the first three by their first bytes):
- Confluent wire format: 0x00, a 4-byte big-endian schema id, Avro binary; the writer schema comes
  from a Schema Registry. Confluent's header form (`__value_schema_id` header, plain Avro value) too.
- Avro single-object encoding: 0xC3 0x01, the 8-byte CRC-64-AVRO fingerprint of the writer schema,
  Avro binary; the writer schema is found by fingerprint among the local `schemas/*.avsc`.
- Segment JSON: a UTF-8 JSON object, for teams not on Avro yet.
- schemaless: bare Avro binary written with one configured schema (never auto-detected).

Every writer schema is resolved against the current reader schema (`schemas/segment_event.avsc`)
with Avro's resolution rules, so older and newer compatible writers decode to the same Event; on a
topic with `sources:` (`consumer.events.sources`), a record of another schema is read with its writer
schema alone and its source makes the Event, as it does for a JSON record there.
Decoding is pure and raises only DecodeError once the writer schema is known. A registry schema not
known yet is looked up by `decode` itself (blocking, with retries: for one-shot callers), or, in the
service, ahead of time off the event loop: `registry_key` says which schema a record still needs,
`fetch_schema` asks the registry once, `learn` caches the answer (`consumer.service.lookups`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import fastavro.read

from consumer.errors import DecodeError, RecordRef, RegistryError, SettingsError
from consumer.events.jsonvalue import parse_object
from consumer.events.model import JSON, Event
from consumer.events.registry import RegistryKey, RegistrySchemas, describe_key, make_registry_client
from consumer.events.schemas import SINGLE_OBJECT_MAGIC, AvroSchema, LocalSchemas, from_avro, parse_schema
from consumer.events.sources import Sources
from consumer.events.sources import to_event as source_event

__all__ = ["ENCODINGS", "Decoder", "Headers", "make_registry_client", "to_event"]

#: Record headers as confluent-kafka hands them over (a list of pairs; a dict is accepted too).
Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None]

ENCODINGS = ("auto", "confluent", "single-object", "schemaless", "json")
#: Header Confluent's serializers use when the schema id travels in headers instead of the value.
VALUE_SCHEMA_ID_HEADER = "__value_schema_id"
_CONFLUENT_HEADER = 5  # magic byte + 4-byte schema id
_SINGLE_OBJECT_HEADER = 10  # 2 magic bytes + 8-byte fingerprint
_GUID_HEADER = 17  # magic byte 1 + 16-byte GUID


@dataclass(frozen=True)
class _Writer:
    """A writer schema ready to read with: `reader` is None when it is the reader schema itself."""

    schema: AvroSchema
    reader: dict[str, Any] | None


class Decoder:
    """Turn record values into Events; configured once, then called for every record."""

    def __init__(
        self,
        *,
        schemas_dir: Path,
        encoding: str = "auto",
        registry: Any = None,  # a confluent-kafka SchemaRegistryClient, or a configured RegistrySchemas
        schemaless_schema: str | None = None,
        max_bytes: int = 1_000_000,
        registry_attempts: int = 4,
    ) -> None:
        if encoding not in ENCODINGS:
            raise SettingsError(f"unknown encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")
        if encoding == "confluent" and registry is None:
            raise SettingsError("encoding 'confluent' needs a Schema Registry: set the registry URL")
        if encoding == "schemaless" and not schemaless_schema:
            raise SettingsError("encoding 'schemaless' needs the writer schema: set the schemaless schema")
        self.encoding = encoding
        self.max_bytes = max_bytes
        self._local = LocalSchemas.load(schemas_dir)
        self._reader = self._local.reader
        self._registry = (
            registry
            if registry is None or isinstance(registry, RegistrySchemas)
            else RegistrySchemas(registry, attempts=registry_attempts)
        )
        self._by_fingerprint = {fp: self._writer(s) for fp, s in self._local.by_fingerprint.items()}
        self._schemaless = self._writer(self._local.named(schemaless_schema)) if schemaless_schema else None
        self._by_id: dict[RegistryKey, _Writer] = {}
        self._sources = Sources()

    def use_sources(self, sources: Sources) -> None:
        """Decode the records of the sources' topics that are not Segment-shaped with those sources."""
        self._sources = sources

    @property
    def schemas(self) -> tuple[LocalSchemas, RegistrySchemas | None]:
        """The local schemas and the registry, where sources find their writer schemas at start-up."""
        return self._local, self._registry

    def registry_key(self, value: bytes | None, headers: Headers | None = None) -> RegistryKey | None:
        """The registry id or GUID of the writer schema `value` needs and this decoder has not got yet;
        None when it needs none, has it, or the record is broken in a way `decode` will report."""
        if self._registry is None or value is None or len(value) > self.max_bytes:
            return None
        key = _registry_key(value, headers, self.encoding)
        return None if key is None or key in self._by_id else key

    def fetch_schema(self, key: RegistryKey) -> str:
        """Ask the registry for `key` once (blocking; DecodeError or RegistryError, see the registry edge)."""
        if self._registry is None:
            raise SettingsError("no Schema Registry is configured")
        return self._registry.fetch(key)

    def learn(self, key: RegistryKey, text: str) -> None:
        """Keep the writer schema registered under `key`; DecodeError when it is not an Avro record."""
        what = f"registry {describe_key(key)}"
        try:
            schema = parse_schema(text, source=what)
        except ValueError as exc:
            raise DecodeError(f"{exc}; register an Avro record schema", reason="schema_mismatch") from exc
        self._by_id[key] = self._writer(schema)

    def close(self) -> None:
        """Let go of the registry client's connections (at the end of a run)."""
        if self._registry is not None:
            self._registry.close()

    def decode(
        self,
        value: bytes | None,
        headers: Headers | None = None,
        *,
        record: RecordRef | None = None,
    ) -> Event:
        """Decode one record value; raise DecodeError (with `record` attached) when it cannot be, or
        RegistryError when the registry, asked with retries, could not say what the writer schema is."""
        try:
            return self._decode(value, headers, record)
        except (DecodeError, RegistryError) as exc:
            if record is not None:
                exc.with_record(record)
            raise

    def _decode(self, value: bytes | None, headers: Headers | None, ref: RecordRef | None) -> Event:
        if value is None:
            raise DecodeError(
                "the record has no value (a tombstone); events must carry a value", reason="not_an_event"
            )
        if len(value) > self.max_bytes:
            raise DecodeError(
                f"the value is {len(value)} bytes, over the {self.max_bytes}-byte limit; raise the "
                "max bytes setting if such events are expected, or fix the producer",
                reason="too_large",
            )
        encoding = self.encoding
        if encoding in ("auto", "confluent") and headers:
            schema_id = _header(headers, VALUE_SCHEMA_ID_HEADER)
            if schema_id is not None:
                return self._avro(value, 0, self._from_header(schema_id), ref)
        if encoding == "auto":
            encoding = _detect(value)
        if encoding == "json":
            data = parse_object(value)
            source = self._sources.for_json(ref.topic, data) if ref is not None else None
            return to_event(data) if source is None or ref is None else source_event(data, source, ref)
        if encoding == "schemaless":
            assert self._schemaless is not None
            return self._avro(value, 0, self._schemaless, ref)
        if encoding == "single-object":
            return self._avro(value, _SINGLE_OBJECT_HEADER, self._single_object(value), ref)
        return self._avro(value, _CONFLUENT_HEADER, self._confluent(value), ref)

    def _confluent(self, value: bytes) -> _Writer:
        if len(value) < _CONFLUENT_HEADER:
            raise DecodeError(
                f"the value is {len(value)} bytes, shorter than the 5-byte Confluent header "
                "(magic byte + schema id); the record was cut or is not Confluent wire format",
                reason="truncated",
            )
        if value[0] != 0:
            raise DecodeError(
                f"first byte is 0x{value[0]:02x}, not 0x00 (Confluent wire format); the producer did "
                "not use a Schema Registry serializer: set the encoding setting to match it",
                reason="bad_magic_byte",
            )
        return self._registry_writer(int.from_bytes(value[1:5], "big"))

    def _single_object(self, value: bytes) -> _Writer:
        if len(value) < _SINGLE_OBJECT_HEADER:
            raise DecodeError(
                f"the value is {len(value)} bytes, shorter than the 10-byte Avro single-object header; "
                "the record was cut",
                reason="truncated",
            )
        if value[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError(
                f"first bytes are 0x{value[:2].hex()}, not 0xc301 (Avro single-object encoding); set the "
                "encoding setting to match the producer",
                reason="bad_magic_byte",
            )
        writer = self._by_fingerprint.get(bytes(value[2:10]))
        if writer is None:
            raise DecodeError(
                f"writer schema fingerprint {value[2:10].hex()} matches no schema in "
                f"{self._local.directory}; add the producer's .avsc file there",
                reason="unknown_schema",
            )
        return writer

    def _from_header(self, raw: bytes | None) -> _Writer:
        key = _header_key(raw)
        if key is None:
            raise DecodeError(
                f"header {VALUE_SCHEMA_ID_HEADER} is not a schema id (0x00 + 4 bytes) or GUID (0x01 + 16 "
                "bytes); fix the producer's serializer settings",
                reason="bad_magic_byte",
            )
        return self._registry_writer(key)

    def _registry_writer(self, key: RegistryKey) -> _Writer:
        cached = self._by_id.get(key)
        if cached is not None:
            return cached
        if self._registry is None:
            raise DecodeError(
                f"the record names Schema Registry schema {describe_key(key)}, but no registry is "
                "configured; set the registry URL (or produce with local schemas)",
                reason="unknown_schema",
            )
        self.learn(key, self._registry.lookup(key))
        return self._by_id[key]

    def _writer(self, schema: AvroSchema) -> _Writer:
        same = schema.canonical == self._reader.canonical
        return _Writer(schema=schema, reader=None if same else self._reader.parsed)

    def _avro(self, value: bytes, offset: int, writer: _Writer, ref: RecordRef | None) -> Event:
        source = self._sources.for_writer(ref.topic, writer.schema) if ref is not None else None
        reader = writer.reader if source is None else self._sources.reader_for(source, writer.schema)
        record = _read(value, offset, writer, reader)
        if source is not None:
            assert ref is not None
            return source_event(record, source, ref)
        try:
            return to_event(from_avro(record))
        except RecursionError:
            raise DecodeError(
                "the Avro record nests values too deeply to decode; flatten the event",
                reason="schema_mismatch",
            ) from None


def _read(value: bytes, offset: int, writer: _Writer, reader: dict[str, Any] | None) -> dict[str, Any]:
    """The Avro record in `value` from `offset`, read as `reader` (None: as written); DecodeError."""
    buf = io.BytesIO(value)
    buf.seek(offset)
    try:
        record = fastavro.schemaless_reader(buf, writer.schema.parsed, reader)
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"a string in the Avro record is not valid UTF-8 ({exc.reason} at byte {exc.start}); "
            "fix the producer's string encoding",
            reason="invalid_utf8",
        ) from None
    except fastavro.read.SchemaResolutionError as exc:
        raise DecodeError(
            f"writer schema {writer.schema.name} ({writer.schema.source}) cannot be read as "
            f"{(reader or {}).get('name')}: {exc}; produce with a schema compatible with "
            f"{'schemas/segment_event.avsc' if reader is writer.reader else 'the newest version'} "
            "(see schemas/README.md)",
            reason="schema_mismatch",
        ) from None
    except RecursionError:
        raise DecodeError(
            "the Avro record nests values too deeply to decode; flatten the event",
            reason="schema_mismatch",
        ) from None
    except Exception as exc:  # noqa: BLE001 - fastavro signals bad bytes with many exception types
        if buf.tell() >= len(value) or isinstance(exc, EOFError):
            raise DecodeError(
                f"the Avro record ends early ({len(value)} bytes, writer schema {writer.schema.source}); "
                "the record was cut, or was written with another schema",
                reason="truncated",
            ) from None
        raise DecodeError(
            f"the bytes do not match writer schema {writer.schema.source} ({type(exc).__name__} at "
            f"byte {buf.tell()}); the producer used another schema or corrupted the record",
            reason="schema_mismatch",
        ) from None
    if buf.tell() != len(value):
        raise DecodeError(
            f"{len(value) - buf.tell()} bytes left over after the record (writer schema "
            f"{writer.schema.source}); the producer used another schema than the one named",
            reason="schema_mismatch",
        )
    if not isinstance(record, dict):  # parse_schema only admits record schemas; kept for mypy
        raise DecodeError(f"writer schema {writer.schema.source} is not a record", reason="schema_mismatch")
    return record


def _header_key(raw: bytes | None) -> RegistryKey | None:
    """The schema id or GUID in a `__value_schema_id` header; None when it is neither."""
    if raw and raw[0] == 1 and len(raw) == _GUID_HEADER:
        guid = raw[1:].hex()
        return f"{guid[:8]}-{guid[8:12]}-{guid[12:16]}-{guid[16:20]}-{guid[20:]}"
    if raw and raw[0] == 0 and len(raw) == _CONFLUENT_HEADER:
        return int.from_bytes(raw[1:5], "big")
    return None


def _registry_key(value: bytes, headers: Headers | None, encoding: str) -> RegistryKey | None:
    """The registry schema `_decode` will ask for, by the same rules; None when it asks for none."""
    if encoding not in ("auto", "confluent"):
        return None
    if headers:
        raw = _header(headers, VALUE_SCHEMA_ID_HEADER)
        if raw is not None:
            return _header_key(raw)
    if len(value) >= _CONFLUENT_HEADER and value[0] == 0:
        return int.from_bytes(value[1:5], "big")
    return None


def _detect(value: bytes) -> str:
    if not value:
        raise DecodeError("the value is empty (0 bytes); events must carry a value", reason="truncated")
    first = value[0]
    if first == 0:
        return "confluent"
    if value[:2] == SINGLE_OBJECT_MAGIC:
        return "single-object"
    if first == 0x7B or value.lstrip()[:1] == b"{":
        return "json"
    if first == 0xC3 and len(value) == 1:
        raise DecodeError("the value is 1 byte, a cut Avro single-object header", reason="truncated")
    raise DecodeError(
        f"first byte is 0x{first:02x}: neither 0x00 (Confluent wire format), 0xC3 0x01 (Avro "
        "single-object) nor '{' (Segment JSON); for bare Avro set the encoding setting to schemaless",
        reason="bad_magic_byte",
    )


def to_event(data: Mapping[str, JSON]) -> Event:
    """Check the Segment envelope's required fields and build the Event (DecodeError naming the field)."""
    for name in ("type", "messageId"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise DecodeError(
                f"field {name!r} is missing or not a non-empty string; every Segment event has a type "
                "(track, identify, ...) and a messageId",
                reason="not_an_event",
            )
    if data.get("userId") in (None, "") and data.get("anonymousId") in (None, ""):
        raise DecodeError(
            "the event has neither userId nor anonymousId; Segment events carry at least one",
            reason="not_an_event",
        )
    return Event.from_segment(data)


def _header(headers: Headers, name: str) -> bytes | None:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == name:
            return value.encode() if isinstance(value, str) else (value or b"")
    return None
