"""Produce Segment-shaped events to Kafka: JSON lines -> Avro (or JSON) -> a topic.

`kafka-twilio produce --bootstrap-servers HOST:PORT --topic T --file events.jsonl` is what tests, the
demo and benchmarks use to make input. Encodings mirror the decoder's: `single-object` (local
schemas, no registry), `confluent` (the schema registered, if it is not yet, under subject
`<topic>-value` of the Schema Registry at `--registry-url` or KAFKA_SCHEMA_REGISTRY_URL, and its id
in every record), `schemaless` (bare Avro) and `json`. Records are keyed by userId (else anonymousId), so one
person's events stay on one partition, in order.

`--schema FILE.avsc` writes a user's own records instead (JSON lines in, Avro of that schema out; ISO-8601
text where the schema has a timestamp logical type), keyed by the value at `--key PATH` if given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from consumer.commands.progress import Progress
from consumer.errors import ConsumerError, KafkaError
from consumer.events.encode import ENCODINGS, Encoder, RecordEncoder, event_key
from consumer.events.paths import parse_path
from consumer.settings import load_kafka_settings

_PRODUCER = {
    "enable.idempotence": True,  # keeps per-key order through retries
    "linger.ms": 20,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
}


def produce_events(
    events: Iterable[Mapping[str, Any]],
    *,
    bootstrap: str,
    topic: str,
    encoding: str = "single-object",
    schemas_dir: Path = Path("schemas"),
    registry_url: str = "",
    registry_user: str = "",
    registry_password: str = "",
    client_config: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    schema_file: Path | None = None,
    key_path: str | None = None,
) -> int:
    """Encode and produce `events` to `topic`; flush; return how many were delivered.

    `progress(count)` is called as events are queued (every 1,000)."""
    from confluent_kafka import Producer

    registry = (registry_url, registry_user, registry_password)
    encoder = _encoder(encoding, topic, schemas_dir, schema_file, registry)
    # librdkafka's own lines (a fresh broker's "Failed to acquire idempotence PID") go through logging.
    logger = logging.getLogger("librdkafka")
    producer = Producer(
        {"bootstrap.servers": bootstrap, "logger": logger, **_PRODUCER, **(client_config or {})}
    )
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    key = parse_path(key_path) if key_path else None
    try:
        for event in events:
            _produce(producer, topic, encoder.encode(event), event_key(event, key), on_delivery)
            count += 1
            if count % 1000 == 0:
                producer.poll(0)
                if progress is not None:
                    progress(count)
    finally:
        # Deliver what was queued even when a later event is bad, so the error names the only gap.
        remaining = producer.flush(60)
    if remaining or failures:
        raise KafkaError(
            f"{len(failures) + remaining} of {count} events were not delivered to {topic!r} at {bootstrap} "
            f"({failures[0] if failures else 'flush timed out'}); check the broker and the topic"
        )
    return count


def _encoder(
    encoding: str, topic: str, schemas_dir: Path, schema_file: Path | None, registry: tuple[str, str, str]
) -> Encoder | RecordEncoder:
    """Segment events with the project's schema, or a user's own records with `schema_file`; the
    schema registered under `<topic>-value` of the registry (url, user, password) when one is given."""
    url = registry[0]
    client = None
    if url:
        from consumer.events.registry import make_registry_client

        client = make_registry_client(*registry)
    subject = f"{topic}-value"
    try:
        if schema_file is None:
            return Encoder(encoding=encoding, schemas_dir=schemas_dir, registry=client, subject=subject)
        return RecordEncoder(encoding=encoding, schema_file=schema_file, registry=client, subject=subject)
    finally:
        # The encoder keeps only the id it registered; the client's connections can go.
        if client is not None and not url.startswith("mock://"):
            client.close()


def _produce(
    producer: Any, topic: str, value: bytes, key: bytes | None, on_delivery: Callable[..., None]
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            return
        except BufferError:  # local queue full: let deliveries drain, then retry
            producer.poll(0.05)


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
        "--bootstrap-servers", help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS)"
    )
    parser.add_argument("--topic", required=True, help="topic to produce to")
    parser.add_argument("--file", required=True, help="JSON lines file of Segment events ('-' for stdin)")
    parser.add_argument("--encoding", choices=ENCODINGS, default="single-object", help="value encoding")
    parser.add_argument(
        "--registry-url",
        default="",
        help="Schema Registry URL for 'confluent' (default: KAFKA_SCHEMA_REGISTRY_URL)",
    )
    parser.add_argument("--schemas-dir", type=Path, default=Path("schemas"), help="local Avro schemas")
    parser.add_argument(
        "--schema", type=Path, help="write the lines as records of this .avsc (a user's own events)"
    )
    parser.add_argument("--key", help="with --schema: the path of the record key, e.g. customer.id")
    args = parser.parse_args(argv)
    try:
        kafka = load_kafka_settings()
    except ConsumerError as exc:
        print(f"kafka-twilio produce: {exc}", file=sys.stderr)
        return 1
    registry_url = args.registry_url or kafka.schema_registry_url
    if args.encoding == "confluent" and not registry_url:
        parser.error("--encoding confluent needs --registry-url (or KAFKA_SCHEMA_REGISTRY_URL)")
    password = kafka.schema_registry_password.get_secret_value() if kafka.schema_registry_password else ""
    progress = Progress(f"produce to {args.topic}")
    try:
        stream: TextIO = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
        with stream:
            count = produce_events(
                read_events(stream, source=args.file),
                bootstrap=args.bootstrap_servers or kafka.bootstrap_servers,
                topic=args.topic,
                encoding=args.encoding,
                schemas_dir=args.schemas_dir,
                registry_url=registry_url if args.encoding == "confluent" else "",
                registry_user=kafka.schema_registry_user,
                registry_password=password,
                client_config=kafka.client,
                progress=progress.update,
                schema_file=args.schema,
                key_path=args.key,
            )
    except (OSError, ValueError, ConsumerError) as exc:
        print(f"kafka-twilio produce: {exc}", file=sys.stderr)
        return 1
    progress.done(count)
    print(f"produced {count} events to {args.topic} ({args.encoding})", file=sys.stderr)
    return 0
