"""Dead-letter writing and `kafka-twilio replay`, on a real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka import KafkaError as LibKafkaError

from consumer.commands.replay import REPLAYED_FROM, ReplayFilter, main, replay
from consumer.errors import DecodeError, ErrorClass, KafkaError, RenderError, TwilioError
from consumer.kafka import deadletter as dl
from consumer.kafka.deadletter import DeadLetterWriter

T0 = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]]


def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every record of `topic`, up to its current end, ordered by (partition, offset)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"read-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p, 0) for p in partitions]
        waiting = {tp.partition for tp in tps if consumer.get_watermark_offsets(tp, timeout=10)[1] > 0}
        consumer.assign([tp for tp in tps if tp.partition in waiting])
        out: list[Record] = []
        while waiting:
            msg = consumer.poll(10)
            assert msg is not None, f"timed out reading {topic}"
            err, partition, offset, headers = msg.error(), msg.partition(), msg.offset(), msg.headers()
            if err is not None:
                assert err.code() == LibKafkaError._PARTITION_EOF
                waiting.discard(partition)
                continue
            assert partition is not None
            assert offset is not None
            assert not isinstance(headers, dict)
            out.append(Record(partition, offset, msg.key(), msg.value(), list(headers or [])))
    finally:
        consumer.close()
    return sorted(out, key=lambda r: (r.partition, r.offset))


@dataclass(frozen=True)
class Letter:
    """One record to dead-letter, as the service would."""

    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes | None]]
    error: Exception
    reason: str
    now: datetime = T0


def dead_letter(bootstrap: str, dlq: str, source: str, letters: list[Letter]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    writer = DeadLetterWriter(producer, dlq)
    reports: list[Exception | None] = []
    for letter in letters:
        writer.write(
            topic=source,
            partition=letter.partition,
            offset=letter.offset,
            key=letter.key,
            value=letter.value,
            headers=letter.headers,
            error=letter.error,
            reason=letter.reason,
            mapping_id="welcome",
            now=letter.now,
            on_delivery=reports.append,
        )
    assert producer.flush(15) == 0
    assert reports == [None] * len(letters)


def letters() -> list[Letter]:
    bad_number = TwilioError(
        "invalid To +14155550123", error_class=ErrorClass.PERMANENT, code=21211, status=400
    )
    template = RenderError("unknown variable", reason="template_error", mapping_id="welcome")
    decode = DecodeError("truncated", reason="truncated")
    return [
        Letter(0, 10, b"user-1", b"value-1", [("traceparent", b"t1")], bad_number, "invalid_number"),
        Letter(1, 20, b"user-2", b"value-2", [("traceparent", b"t2"), ("x", None)], template,
               "template_error", T0 + timedelta(hours=1)),
        Letter(1, 21, b"user-3", b"\x00\x01binary", [], decode, "truncated", T0 + timedelta(hours=2)),
        Letter(0, 11, b"user-4", b"value-4", [("a", b"1"), ("a", b"2")], template, "template_error",
               T0 + timedelta(hours=3)),
        Letter(1, 22, b"user-5", b"value-5", [], bad_number, "invalid_number", T0 + timedelta(hours=4)),
    ]  # fmt: skip


@pytest.fixture
def topics(new_topic: Callable[..., str]) -> tuple[str, str]:
    return new_topic(partitions=2), new_topic(partitions=2)


@pytest.mark.integration
def test_dead_letter_records_keep_key_value_and_headers_and_add_error_headers(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    source, dlq = topics
    dead_letter(kafka_bootstrap, dlq, source, letters()[:2])
    records = read_all(kafka_bootstrap, dlq)
    assert len(records) == 2
    by_key = {r.key: r for r in records}
    first = by_key[b"user-1"]
    assert first.value == b"value-1"
    assert first.headers[0] == ("traceparent", b"t1")
    errors = dict(first.headers[1:])
    assert errors[dl.TOPIC] == source.encode()
    assert (errors[dl.PARTITION], errors[dl.OFFSET]) == (b"0", b"10")
    assert (errors[dl.STAGE], errors[dl.REASON], errors[dl.TWILIO_CODE]) == (
        b"send",
        b"invalid_number",
        b"21211",
    )
    assert errors[dl.MESSAGE] == b"invalid To +1415*****23"
    assert by_key[b"user-2"].headers[:2] == [("traceparent", b"t2"), ("x", None)]


@pytest.mark.integration
def test_replay_by_reason_republishes_exactly_the_matching_originals_to_their_partition(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    source, dlq = topics
    dead_letter(kafka_bootstrap, dlq, source, letters())
    summary = replay(
        bootstrap_servers=kafka_bootstrap,
        dead_letter_topic=dlq,
        record_filter=ReplayFilter(reasons=frozenset({"template_error"})),
    )
    assert (summary.replayed, summary.filtered_out, summary.invalid, summary.failed) == (2, 3, 0, 0)
    assert summary.by_reason == {"template_error": 2}
    assert summary.by_topic == {source: 2}
    replayed = read_all(kafka_bootstrap, source)
    assert [(r.partition, r.key, r.value) for r in replayed] == [
        (0, b"user-4", b"value-4"),
        (1, b"user-2", b"value-2"),
    ]
    originals = {r.key: r for r in read_all(kafka_bootstrap, dlq)}
    for record in replayed:
        *kept, (name, origin) = record.headers
        assert name == REPLAYED_FROM
        dlq_record = originals[record.key]
        assert origin == f"{dlq}/{dlq_record.partition}/{dlq_record.offset}".encode()
        assert not any(k.startswith(dl.PREFIX) for k, _ in kept)
    assert replayed[0].headers[:-1] == [("a", b"1"), ("a", b"2")]
    assert replayed[1].headers[:-1] == [("traceparent", b"t2"), ("x", None)]


@pytest.mark.integration
def test_replay_by_stage_and_time_window_to_another_topic(
    kafka_bootstrap: str, topics: tuple[str, str], new_topic: Callable[..., str]
) -> None:
    source, dlq = topics
    target = new_topic(partitions=1)
    dead_letter(kafka_bootstrap, dlq, source, letters())
    summary = replay(
        bootstrap_servers=kafka_bootstrap,
        dead_letter_topic=dlq,
        record_filter=ReplayFilter(
            stages=frozenset({"send", "render"}), since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=4)
        ),
        to_topic=target,
    )
    assert summary.replayed == 2  # hours 1 (render) and 3 (render); hour 2 is decode, hour 4 is excluded
    assert sorted(r.key or b"" for r in read_all(kafka_bootstrap, target)) == [b"user-2", b"user-4"]
    assert read_all(kafka_bootstrap, source) == []


@pytest.mark.integration
def test_a_dry_run_counts_and_lists_but_produces_nothing(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    source, dlq = topics
    dead_letter(kafka_bootstrap, dlq, source, letters())
    lines: list[str] = []
    summary = replay(
        bootstrap_servers=kafka_bootstrap,
        dead_letter_topic=dlq,
        record_filter=ReplayFilter(reasons=frozenset({"invalid_number"})),
        dry_run=True,
        out=lines.append,
    )
    assert (summary.replayed, summary.dry_run) == (2, True)
    assert len([line for line in lines if line.startswith("would replay")]) == 2
    assert "would replay: 2" in summary.render()
    assert read_all(kafka_bootstrap, source) == []


@pytest.mark.integration
def test_with_a_group_id_a_second_run_replays_only_what_was_dead_lettered_since(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    source, dlq = topics
    group = f"replay-{uuid.uuid4().hex[:8]}"
    batch = letters()
    dead_letter(kafka_bootstrap, dlq, source, batch[:3])
    first = replay(bootstrap_servers=kafka_bootstrap, dead_letter_topic=dlq, group_id=group)
    again = replay(bootstrap_servers=kafka_bootstrap, dead_letter_topic=dlq, group_id=group)
    dead_letter(kafka_bootstrap, dlq, source, batch[3:])
    third = replay(bootstrap_servers=kafka_bootstrap, dead_letter_topic=dlq, group_id=group)
    assert (first.replayed, again.replayed, third.replayed) == (3, 0, 2)
    assert sorted(r.key or b"" for r in read_all(kafka_bootstrap, source)) == [
        b"user-1",
        b"user-2",
        b"user-3",
        b"user-4",
        b"user-5",
    ]


@pytest.mark.integration
def test_records_without_error_headers_are_skipped_and_counted(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    source, dlq = topics
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(dlq, value=b"someone else's record", partition=0)
    producer.flush(10)
    dead_letter(kafka_bootstrap, dlq, source, letters()[:1])
    summary = replay(bootstrap_servers=kafka_bootstrap, dead_letter_topic=dlq)
    assert (summary.replayed, summary.invalid) == (1, 1)


@pytest.mark.integration
def test_the_cli_prints_a_summary_and_exits_zero(
    kafka_bootstrap: str, topics: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    source, dlq = topics
    dead_letter(kafka_bootstrap, dlq, source, letters())
    code = main([
        "--bootstrap-servers", kafka_bootstrap, "--dead-letter-topic", dlq,
        "--reason", "invalid_number,truncated", "--since", "2025-01-31T09:00:00",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "replayed: 3" in out
    assert "filtered out: 2" in out
    assert "invalid_number: 2" in out
    assert "truncated: 1" in out
    assert len(read_all(kafka_bootstrap, source)) == 3


@pytest.mark.integration
def test_the_cli_exits_one_naming_a_missing_dead_letter_topic(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    code = main(
        ["--bootstrap-servers", kafka_bootstrap, "--dead-letter-topic", missing, "--idle-timeout", "5"]
    )
    assert code == 1
    assert f"dead-letter topic {missing!r} does not exist" in capsys.readouterr().err


def test_a_kafka_error_is_what_the_library_raises_for_an_unreachable_broker() -> None:
    with pytest.raises(KafkaError):
        replay(bootstrap_servers="127.0.0.1:1", dead_letter_topic="dlq", idle_timeout_s=1)
