"""Decode throughput on one core: record values -> Event, per encoding, plus the encoder.

Run: .venv/bin/python bench/bench_decode.py [--seconds 2]
Writes bench/results/bench_decode.json. The inputs are the fixture events (tests/fixtures/events),
cycled. The baseline is confluent-kafka's own AvroDeserializer on the same Confluent-framed bytes:
it stops at a dict, where ours goes on to a validated Event.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
FIXTURES = sorted(p for p in (ROOT / "tests" / "fixtures" / "events").glob("*.json") if p.stem != "expected")


def measure(fn: Callable[[Any], object], inputs: list[Any], seconds: float) -> float:
    """Records per second of `fn` over `inputs` (cycled) for about `seconds`."""
    for value in inputs:  # warm caches (registry look-ups, parsed schemas)
        fn(value)
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for value in inputs:
            fn(value)
        done += len(inputs)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0, help="time per case")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from consumer.events.decode import Decoder
    from consumer.events.encode import Encoder, encode_event
    from consumer.events.registry import make_registry_client
    from consumer.events.schemas import SINGLE_OBJECT_MAGIC, LocalSchemas, to_avro

    events = [json.loads(p.read_text()) for p in FIXTURES]
    registry = make_registry_client("mock://bench")

    def enc(encoding: str) -> list[bytes]:
        return [
            encode_event(e, encoding=encoding, schemas_dir=SCHEMAS, registry=registry, subject="bench-value")
            for e in events
        ]

    v1 = LocalSchemas.load(SCHEMAS).by_name["segment_event.v1"]

    def v1_bytes(event: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(SINGLE_OBJECT_MAGIC + v1.fingerprint)
        record = {k: v for k, v in to_avro(event).items() if k not in ("external_ids", "extra")}
        fastavro.schemaless_writer(buf, v1.parsed, record)
        return buf.getvalue()

    single_object = Encoder(encoding="single-object", schemas_dir=SCHEMAS)
    auto = Decoder(schemas_dir=SCHEMAS, registry=registry)
    schemaless = Decoder(schemas_dir=SCHEMAS, encoding="schemaless", schemaless_schema="segment_event")
    confluent_bytes = enc("confluent")
    baseline = AvroDeserializer(registry)
    ctx = SerializationContext("bench", MessageField.VALUE)
    cases: list[tuple[str, Callable[[Any], object], list[Any]]] = [
        ("decode confluent wire format (registry, cached)", auto.decode, confluent_bytes),
        ("decode avro single-object (local schemas)", auto.decode, enc("single-object")),
        ("decode avro schemaless (configured schema)", schemaless.decode, enc("schemaless")),
        ("decode v1 writer -> v2 reader (resolution)", auto.decode, [v1_bytes(e) for e in events]),
        ("decode segment json", auto.decode, enc("json")),
        ("baseline: confluent AvroDeserializer -> dict", lambda v: baseline(v, ctx), confluent_bytes),
        ("encode single-object (Encoder.encode, produce path)", single_object.encode, events),
    ]  # fmt: skip
    sizes = {
        "avro": sum(map(len, confluent_bytes)) / len(events),
        "json": sum(map(len, enc("json"))) / len(events),
    }
    results = []
    for name, fn, inputs in cases:
        rate = measure(fn, inputs, args.seconds)
        results.append({"case": name, "records_per_s": round(rate)})
    base = next(r["records_per_s"] for r in results if r["case"].startswith("baseline"))
    print(f"{'case':52} {'records/s':>10} {'vs baseline':>12}")
    for r in results:
        r["ratio_vs_baseline"] = round(r["records_per_s"] / base, 2)
        print(f"{r['case']:52} {r['records_per_s']:>10,} {r['ratio_vs_baseline']:>11.2f}x")
    avro_b, json_b = sizes["avro"], sizes["json"]
    print(f"mean value size: avro {avro_b:.0f} B, json {json_b:.0f} B ({len(events)} fixture shapes)")
    out = {
        "bench": "bench_decode",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cores_used": 1,
        "seconds_per_case": args.seconds,
        "fixtures": len(events),
        "mean_value_bytes": {k: round(v) for k, v in sizes.items()},
        "results": results,
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "bench_decode.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
