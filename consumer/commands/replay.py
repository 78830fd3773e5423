"""`kafka-twilio replay`: re-publish dead-lettered records to their source topic, after a fix.

Reads the dead-letter topic from the beginning (or from a consumer group's committed offsets, so
runs can resume), up to the end offsets seen at start: records dead-lettered again while replaying
wait for the next run instead of looping. Each record that passes the filters (reason, stage, time
window) is produced with its original key, value and headers, the error headers stripped and a
`kafka_twilio.replayed.from` header (`<dlq topic>/<partition>/<offset>`) added. When replaying to
the original topic the original partition is kept, so per-key order there is preserved.

The service de-duplicates sends (invariant 5), so replaying a record that had in fact been sent
does not message the recipient twice within the de-duplication window.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka import KafkaError as LibKafkaError

from consumer.commands.progress import Progress
from consumer.errors import DecodeError, KafkaError, SettingsError
from consumer.kafka.deadletter import DeadLetterInfo, Header, parse_dead_letter_headers
from consumer.kafka.errors import kafka_error
from consumer.settings import load_kafka_settings

REPLAYED_FROM = "kafka_twilio.replayed.from"


@dataclass(frozen=True)
class ReplayFilter:
    """Which dead-letter records to replay. Empty sets match everything; `until` is exclusive."""

    reasons: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def accepts(self, info: DeadLetterInfo, when: datetime | None) -> bool:
        """True when the record matches; `when` is its dead-letter time (None: unknown, fails windows)."""
        if self.reasons and info.reason not in self.reasons:
            return False
        if self.stages and info.stage not in self.stages:
            return False
        if self.since is None and self.until is None:
            return True
        if when is None:
            return False
        return (self.since is None or when >= self.since) and (self.until is None or when < self.until)


def replay_headers(info: DeadLetterInfo, dlq_topic: str, partition: int, offset: int) -> list[Header]:
    """The original headers plus where this copy came from."""
    return [*info.original_headers, (REPLAYED_FROM, f"{dlq_topic}/{partition}/{offset}".encode())]


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay run did. In a dry run, `replayed` counts what would have been replayed."""

    replayed: int
    filtered_out: int
    invalid: int  # records on the dead-letter topic without kafka-twilio error headers
    failed: int  # produce failures; their dead-letter offsets are not committed
    by_reason: Mapping[str, int] = field(default_factory=dict)
    by_topic: Mapping[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def render(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        lines = [
            f"{verb}: {self.replayed}",
            f"filtered out: {self.filtered_out}",
            f"not dead-letter records (skipped): {self.invalid}",
            f"failed: {self.failed}",
        ]
        for title, counts in (("by reason", self.by_reason), ("by topic", self.by_topic)):
            if counts:
                lines.append(f"{title}:")
                lines += [
                    f"  {name}: {n}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                ]
        return "\n".join(lines)


def _when(info: DeadLetterInfo, msg: Message) -> datetime | None:
    if info.timestamp is not None:
        return info.timestamp if info.timestamp.tzinfo else info.timestamp.replace(tzinfo=UTC)
    kind, ms = msg.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE else datetime.fromtimestamp(ms / 1000, UTC)


class _Replayer:
    """One replay run: filters and produces records, counts outcomes, knows what may be committed."""

    def __init__(
        self,
        dlq: str,
        filt: ReplayFilter,
        to_topic: str | None,
        producer: Producer | None,
        say: Callable[[str], None],
    ) -> None:
        self.dlq = dlq
        self.filt = filt
        self.to_topic = to_topic
        self.producer = producer  # None in a dry run
        self.say = say
        self.replayed = 0
        self.filtered_out = 0
        self.invalid = 0
        self.failed = 0
        self.by_reason: Counter[str] = Counter()
        self.by_topic: Counter[str] = Counter()
        self.first_failed: dict[int, int] = {}  # dlq partition -> lowest offset whose replay failed
        self.done_upto: dict[int, int] = {}  # dlq partition -> offset after the last one handled
        self._partitions_of: dict[str, int | None] = {}

    def handle(self, msg: Message, part: int, offset: int) -> None:
        """Filter one dead-letter record and, if it passes, produce it back."""
        self.done_upto[part] = offset + 1
        where = f"{self.dlq}[{part}]@{offset}"
        try:
            info = parse_dead_letter_headers(msg.headers())
        except DecodeError as exc:
            self.invalid += 1
            self.say(f"skip {where}: {exc.message}")
            return
        if not self.filt.accepts(info, _when(info, msg)):
            self.filtered_out += 1
            return
        target = self.to_topic or info.topic
        if target == self.dlq:
            self.invalid += 1
            self.say(f"skip {where}: its source topic is the dead-letter topic itself")
            return
        if self.producer is None:
            self.say(f"would replay {where} -> {target} reason={info.reason} stage={info.stage}")
            self._delivered(info, target)
            return
        count = self._partition_count(self.producer, target)
        if count is None:
            self._fail(part, offset)
            self.say(f"failed {where}: target topic {target!r} does not exist; create it or pass --to-topic")
            return

        def delivered(err: LibKafkaError | None, _msg: Message) -> None:
            if err is None:
                self._delivered(info, target)
            else:
                self._fail(part, offset)
                self.say(f"failed {where} -> {target}: {err.str()}")

        headers = replay_headers(info, self.dlq, part, offset)
        # Going home, keep the original partition so the record rejoins its key's order there.
        if self.to_topic is None and info.partition < count:
            self.producer.produce(
                target, msg.value(), msg.key(), info.partition, headers=headers, on_delivery=delivered
            )
        else:
            self.producer.produce(target, msg.value(), msg.key(), headers=headers, on_delivery=delivered)
        self.producer.poll(0)

    def _partition_count(self, producer: Producer, topic: str) -> int | None:
        if topic not in self._partitions_of:
            meta = producer.list_topics(topic, timeout=10).topics.get(topic)
            self._partitions_of[topic] = (
                None if meta is None or meta.error is not None else len(meta.partitions)
            )
        return self._partitions_of[topic]

    def _fail(self, partition: int, offset: int) -> None:
        self.failed += 1
        self.first_failed[partition] = min(offset, self.first_failed.get(partition, offset))

    def _delivered(self, info: DeadLetterInfo, target: str) -> None:
        self.replayed += 1
        self.by_reason[info.reason] += 1
        self.by_topic[target] += 1

    def commit_offsets(self) -> list[TopicPartition]:
        """Per partition: after the last record handled, but never past a failed one."""
        return [
            TopicPartition(self.dlq, p, min(upto, self.first_failed.get(p, upto)))
            for p, upto in self.done_upto.items()
        ]

    def summary(self, dry_run: bool) -> ReplaySummary:
        return ReplaySummary(
            replayed=self.replayed,
            filtered_out=self.filtered_out,
            invalid=self.invalid,
            failed=self.failed,
            by_reason=dict(self.by_reason),
            by_topic=dict(self.by_topic),
            dry_run=dry_run,
        )


def replay(
    *,
    bootstrap_servers: str,
    dead_letter_topic: str,
    record_filter: ReplayFilter | None = None,
    to_topic: str | None = None,
    dry_run: bool = False,
    group_id: str | None = None,
    client_config: Mapping[str, str] | None = None,
    idle_timeout_s: float = 30.0,
    out: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Replay the dead-letter topic up to its current end; return what was done.

    With `group_id`, start from that group's committed offsets and commit what was replayed
    (never past a record whose replay failed); without it, read from the beginning, commit nothing.
    Raises KafkaError when the topic is missing, reading fails or replayed records go unacknowledged.
    """
    if to_topic is not None and to_topic == dead_letter_topic:
        raise SettingsError("to_topic must not be the dead-letter topic itself: that would loop")
    common = {**(client_config or {}), "bootstrap.servers": bootstrap_servers}
    consumer = Consumer({
        **common,
        "group.id": group_id or f"kafka-twilio-replay-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })  # fmt: skip
    producer = (
        None if dry_run else Producer({**common, "enable.idempotence": True, "message.timeout.ms": 30000})
    )
    run = _Replayer(
        dead_letter_topic, record_filter or ReplayFilter(), to_topic, producer, out or (lambda _: None)
    )
    try:
        ends = _assign(consumer, dead_letter_topic, group_id, idle_timeout_s)
        _read(consumer, ends, run, dead_letter_topic, idle_timeout_s, progress=progress or (lambda _: None))
        if producer is not None:
            left = producer.flush(60)
            if left:
                raise KafkaError(
                    f"{left} replayed record(s) were not acknowledged within 60s; nothing committed"
                )
            offsets = run.commit_offsets()
            if group_id and offsets:
                consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        fix = "check --bootstrap-servers and the broker"
        raise kafka_error(exc, f"replay of {dead_letter_topic!r} failed", fix) from exc
    finally:
        consumer.close()
    return run.summary(dry_run)


def _read(
    consumer: Consumer,
    ends: dict[int, int],
    run: _Replayer,
    dlq: str,
    idle_timeout_s: float,
    *,
    progress: Callable[[int], None],
) -> None:
    """Hand every record before the end offsets to `run`, then return."""
    last_seen = time.monotonic()
    handled = 0
    while ends:
        msg = consumer.poll(0.5)
        if msg is None:
            if time.monotonic() - last_seen > idle_timeout_s:
                raise KafkaError(
                    f"replay stopped: partitions {sorted(ends)} of {dlq!r} did not reach"
                    f" their end offsets within {idle_timeout_s:g}s; is the broker reachable?"
                )
            continue
        last_seen = time.monotonic()
        part, offset, err = msg.partition() or 0, msg.offset() or 0, msg.error()
        if err is not None:
            if err.code() == LibKafkaError._PARTITION_EOF:
                ends.pop(part, None)
                continue
            raise kafka_error(err, f"reading {dlq!r} failed")
        # Stop at the end seen at start: records dead-lettered again meanwhile wait for the next run.
        if part not in ends or offset >= ends[part]:
            ends.pop(part, None)
            continue
        if offset + 1 >= ends[part]:
            ends.pop(part)
        run.handle(msg, part, offset)
        handled += 1
        progress(handled)


def _assign(consumer: Consumer, topic: str, group_id: str | None, timeout_s: float) -> dict[int, int]:
    """Assign every partition that has records to read; return partition -> end offset (exclusive)."""
    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None:
        raise KafkaError(f"dead-letter topic {topic!r} does not exist; check --dead-letter-topic")
    tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
    committed = (
        {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=timeout_s)} if group_id else {}
    )
    ends: dict[int, int] = {}
    assignment: list[TopicPartition] = []
    for tp in tps:
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        start = max(low, committed.get(tp.partition, low))  # a negative committed offset means none
        if start < high:
            ends[tp.partition] = high
            assignment.append(TopicPartition(topic, tp.partition, start))
    consumer.assign(assignment)
    return ends


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time; use e.g. 2025-01-31T09:00:00Z or 2025-01-31"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kafka-twilio replay", description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--dead-letter-topic", help="topic to read (default: KAFKA_DEAD_LETTER_TOPIC)")
    p.add_argument(
        "--reason", action="append", default=[], help="replay only this reason (repeatable, or a,b)"
    )
    p.add_argument(
        "--stage", action="append", default=[], help="replay only this stage: decode, render, send…"
    )
    p.add_argument(
        "--since", type=_parse_time, help="dead-lettered at or after this ISO-8601 time (UTC if no zone)"
    )
    p.add_argument("--until", type=_parse_time, help="dead-lettered before this ISO-8601 time")
    p.add_argument("--to-topic", help="publish here instead of each record's original topic")
    p.add_argument("--dry-run", action="store_true", help="list what would be replayed, produce nothing")
    p.add_argument("--group-id", help="resume from (and commit to) this consumer group's offsets")
    p.add_argument("--idle-timeout", type=float, default=30.0, help="give up after this many silent seconds")
    return p


def _split(values: Collection[str]) -> frozenset[str]:
    return frozenset(v.strip() for item in values for v in item.split(",") if v.strip())


def main(argv: list[str]) -> int:
    """Entry point of `kafka-twilio replay`."""
    args = _parser().parse_args(argv)
    try:
        kafka = load_kafka_settings()
    except SettingsError as exc:
        print(f"kafka-twilio replay: {exc}", file=sys.stderr)
        return 2
    dlq = args.dead_letter_topic or kafka.dead_letter_topic
    if args.to_topic and args.to_topic == dlq:
        print("kafka-twilio replay: --to-topic must differ from --dead-letter-topic", file=sys.stderr)
        return 2
    progress = Progress(f"replay {dlq}")
    try:
        summary = replay(
            bootstrap_servers=args.bootstrap_servers or kafka.bootstrap_servers,
            dead_letter_topic=dlq,
            record_filter=ReplayFilter(
                reasons=_split(args.reason), stages=_split(args.stage), since=args.since, until=args.until
            ),
            to_topic=args.to_topic,
            dry_run=args.dry_run,
            group_id=args.group_id,
            client_config=kafka.client,
            idle_timeout_s=args.idle_timeout,
            out=print,
            progress=progress.update,
        )
    except KafkaError as exc:
        print(f"kafka-twilio replay: {exc}", file=sys.stderr)
        return 1
    progress.done(summary.replayed + summary.filtered_out + summary.invalid + summary.failed)
    print(summary.render())
    return 1 if summary.failed else 0
