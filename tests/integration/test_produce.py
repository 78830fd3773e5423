"""`kafka-twilio produce` against the real broker: JSON lines -> Avro -> topic -> Decoder -> Event."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from consumer.cli import main as cli_main
from consumer.events.decode import Decoder
from consumer.events.model import Event
from tests.unit._fixtures import SCHEMAS_DIR, all_fixtures, load

pytestmark = pytest.mark.integration

NAMES = all_fixtures()


def _consume(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out: list[Any] = []
    try:
        for _ in range(int(timeout_s * 10)):
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                out.append(msg)
                if len(out) == count:
                    break
    finally:
        consumer.close()
    assert len(out) == count, f"got {len(out)} of {count} records from {topic}"
    return out


def _jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(load(n)) + "\n\n" for n in NAMES), encoding="utf-8")
    return path


@pytest.mark.parametrize("encoding", ["single-object", "json"])
def test_the_produce_command_writes_every_fixture_decodably_keyed_by_user(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, encoding: str
) -> None:
    topic = new_topic(partitions=3)
    path = str(_jsonl(tmp_path))
    argv = ["produce", "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--file", path,
            "--encoding", encoding, "--schemas-dir", str(SCHEMAS_DIR)]  # fmt: skip
    assert cli_main(argv) == 0
    decoder = Decoder(schemas_dir=SCHEMAS_DIR)
    by_id = {load(n)["messageId"]: load(n) for n in NAMES}
    partition_of_user: dict[bytes, set[int]] = {}
    for msg in _consume(kafka_bootstrap, topic, len(NAMES)):
        event = decoder.decode(msg.value(), msg.headers())
        source = by_id.pop(event.message_id)
        assert event == Event.from_segment(source)
        assert msg.key() == (source.get("userId") or source.get("anonymousId")).encode()
        partition_of_user.setdefault(msg.key(), set()).add(msg.partition())
    assert by_id == {}
    assert all(len(parts) == 1 for parts in partition_of_user.values())


def test_a_bad_line_is_reported_with_its_number(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(load(NAMES[0])) + "\n[1, 2]\n", encoding="utf-8")
    argv = ["produce", "--bootstrap-servers", kafka_bootstrap, "--topic", new_topic(), "--file", str(path)]
    assert cli_main(argv) == 1
    assert "bad.jsonl:2: expected one JSON object per line" in capsys.readouterr().err
