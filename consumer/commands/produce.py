"""Produce Segment-shaped events to Kafka: JSON lines -> Avro (or JSON) -> a topic.

`kafka-twilio produce --bootstrap-servers HOST:PORT --topic T --file events.jsonl` is what tests, the
demo and benchmarks use to make input. Encodings mirror the decoder's: `single-object` (local
schemas, no registry), `confluent` (registered through a Schema Registry, subject `<topic>-value`),
`schemaless` (bare Avro) and `json`. Records are keyed by userId (else anonymousId), so one
person's events stay on one partition, in order.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import fastavro

from consumer.errors import ConsumerError, KafkaError, SettingsError
from consumer.events import avro_fast as avro_encode
from consumer.events.model import JSON
from consumer.events.schemas import SINGLE_OBJECT_MAGIC, LocalSchemas, to_avro

ENCODINGS = ("single-object", "confluent", "schemaless", "json")


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
        self._fast = schema.fingerprint.hex() == avro_encode.FINGERPRINT
        self._prefix = b""
        if encoding == "single-object":
            self._prefix = SINGLE_OBJECT_MAGIC + schema.fingerprint
        elif encoding == "confluent":
            if registry is None or not subject:
                raise SettingsError("encoding 'confluent' needs a Schema Registry and a subject")
            self._prefix = b"\x00" + _register(registry, subject, schema.canonical, schema.source)

    def encode(self, event: Mapping[str, JSON]) -> bytes:
        """The value bytes for one event; ValueError when it holds something JSON cannot."""
        if self.encoding == "json":
            return json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        if self._fast:
            try:
                return self._prefix + avro_encode.encode(event)
            except (avro_encode.Unsupported, UnicodeEncodeError, RecursionError):
                pass  # the general path below gives the precise error, or handles the odd type
        buf = io.BytesIO()
        buf.write(self._prefix)
        fastavro.schemaless_writer(buf, self._parsed, to_avro(event))
        return buf.getvalue()


def _register(registry: Any, subject: str, canonical: str, source: str) -> bytes:
    from confluent_kafka.schema_registry import Schema

    from consumer.events.registry import describe_client

    try:
        schema_id = int(registry.register_schema(subject, Schema(canonical, "AVRO")))
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


def event_key(event: Mapping[str, Any]) -> bytes | None:
    """The record key: userId, else anonymousId, so one person's events keep their order."""
    for name in ("userId", "anonymousId"):
        value = event.get(name)
        if value not in (None, ""):
            return str(value).encode()
    return None


def produce_events(
    events: Iterable[Mapping[str, Any]],
    *,
    bootstrap: str,
    topic: str,
    encoding: str = "single-object",
    schemas_dir: Path = Path("schemas"),
    registry_url: str = "",
    client_config: Mapping[str, str] | None = None,
) -> int:
    """Encode and produce `events` to `topic`; flush; return how many were delivered."""
    from confluent_kafka import Producer

    registry = None
    if registry_url:
        from consumer.events.registry import make_registry_client

        registry = make_registry_client(registry_url)
    encoder = Encoder(encoding=encoding, schemas_dir=schemas_dir, registry=registry, subject=f"{topic}-value")
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # keeps per-key order through retries
        "linger.ms": 20,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
    }
    config.update(client_config or {})
    producer = Producer(config)
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    try:
        for event in events:
            value = encoder.encode(event)
            while True:
                try:
                    producer.produce(topic, value=value, key=event_key(event), on_delivery=on_delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain, then retry
                    producer.poll(0.05)
            count += 1
            if count % 1000 == 0:
                producer.poll(0)
    finally:
        # Deliver what was queued even when a later event is bad, so the error names the only gap.
        remaining = producer.flush(60)
    if remaining or failures:
        raise KafkaError(
            f"{len(failures) + remaining} of {count} events were not delivered to {topic!r} at {bootstrap} "
            f"({failures[0] if failures else 'flush timed out'}); check the broker and the topic"
        )
    return count


def read_events(lines: Iterable[str], *, source: str = "<input>") -> Iterator[dict[str, Any]]:
    """Parse JSON lines (blank lines skipped); ValueError naming the line when one is not an object."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}:{number}: expected one JSON object per line")
        yield data


def main(argv: list[str]) -> int:
    """`kafka-twilio produce`: produce the events of a JSON-lines file to a topic."""
    parser = argparse.ArgumentParser(prog="kafka-twilio produce", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
    )
    parser.add_argument("--topic", required=True, help="topic to produce to")
    parser.add_argument("--file", required=True, help="JSON lines file of Segment events ('-' for stdin)")
    parser.add_argument("--encoding", choices=ENCODINGS, default="single-object", help="value encoding")
    parser.add_argument("--registry-url", default="", help="Schema Registry URL (needed for 'confluent')")
    parser.add_argument("--schemas-dir", type=Path, default=Path("schemas"), help="local Avro schemas")
    args = parser.parse_args(argv)
    if args.encoding == "confluent" and not args.registry_url:
        parser.error("--encoding confluent needs --registry-url")
    try:
        stream: TextIO = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
        with stream:
            count = produce_events(
                read_events(stream, source=args.file),
                bootstrap=args.bootstrap_servers,
                topic=args.topic,
                encoding=args.encoding,
                schemas_dir=args.schemas_dir,
                registry_url=args.registry_url,
            )
    except (OSError, ValueError, ConsumerError) as exc:
        print(f"kafka-twilio produce: {exc}", file=sys.stderr)
        return 1
    print(f"produced {count} events to {args.topic} ({args.encoding})", file=sys.stderr)
    return 0
