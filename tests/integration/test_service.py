"""The service end to end: real Kafka broker, Twilio simulator on loopback, the real run loop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from consumer.commands.produce import produce_events
from consumer.kafka.deadletter import parse_dead_letter_headers
from consumer.metrics import Metrics
from consumer.service.parts import Parts
from consumer.service.service import Service
from consumer.settings import Settings, load_settings
from consumer.simulator import SimulatorHandle
from tests.integration.conftest import ROOT, order_event

pytestmark = pytest.mark.integration

Journal = list[tuple[str, int, int, list[tuple[str, str, str]]]]


async def run_until_idle(
    settings: Settings, *, idle_s: float = 1.5, timeout_s: float = 90
) -> tuple[Journal, Metrics]:
    journal: Journal = []
    metrics = Metrics()
    service = Service(
        settings,
        Parts.real(settings),
        metrics=metrics,
        journal=lambda *r: journal.append(r),
        exit_when_idle_s=idle_s,
        handle_signals=False,
    )
    code = await asyncio.wait_for(service.run(), timeout_s)
    assert code == 0
    return journal, metrics


def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    assert produce_events(events, bootstrap=bootstrap, topic=topic, schemas_dir=ROOT / "schemas") == len(
        events
    )


def offsets_of(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
        }
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 20) -> list[Any]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"r-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    out: list[Any] = []
    try:
        for _ in range(int(timeout_s * 10)):
            msg = c.poll(0.1)
            if msg is not None and msg.error() is None:
                out.append(msg)
            if len(out) >= expected:
                # Keep polling briefly: more records than expected is a failure too.
                for _ in range(10):
                    extra = c.poll(0.1)
                    if extra is not None and extra.error() is None:
                        out.append(extra)
                break
    finally:
        c.close()
    return out


async def test_every_record_of_a_mixed_stream_ends_in_exactly_one_outcome_and_poison_is_dead_lettered(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_settings: Callable[..., Settings],
) -> None:
    topic = new_topic(partitions=3)
    valid = [order_event(n) for n in range(6)]
    unmatched = [{**order_event(100 + n), "event": "Page Viewed"} for n in range(2)]
    no_phone = [order_event(200 + n, phone="not a number") for n in range(2)]
    rejected = [order_event(300 + n, phone="+15005550001") for n in range(2)]  # simulator: 21211 invalid To
    produce(kafka_bootstrap, topic, valid + unmatched + no_phone + rejected)
    garbage = [
        (b"g1", b"\xc3\x01\x00\x00truncated"),
        (b"g2", b"\x00\x00\x00\x00\x63garbage"),
        (b"g3", b"{not json"),
    ]
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, value in garbage:
        p.produce(topic, key=key, value=value, headers=[("trace", b"abc")])
    assert p.flush(10) == 0
    settings = service_settings([topic])

    journal, metrics = await run_until_idle(settings)

    ends = offsets_of(kafka_bootstrap, topic, 3)
    total = sum(ends.values())
    assert total == 15
    seen = Counter((p, o) for _, p, o, _ in journal)
    assert len(seen) == total, "every offset finishes"
    assert set(seen.values()) == {1}, "exactly once"
    assert all(len(results) == 1 for *_, results in journal)
    outcomes = Counter((results[0][1], results[0][2]) for *_, results in journal)
    assert outcomes[("sent", "accepted")] == 6  # a Messaging Service sender: Twilio says accepted
    assert outcomes[("skipped", "no_mapping")] == 2
    # Twilio judged two numbers invalid (21211): skipped like the two render found invalid itself.
    assert outcomes[("skipped", "invalid_number")] == 4
    assert sum(n for (o, _), n in outcomes.items() if o == "dead_lettered") == 3
    assert committed(kafka_bootstrap, settings.kafka.group_id, topic, 3) == ends
    sent_to = sorted(m["To"] for m in simulator.messages())
    assert sent_to == sorted(e["properties"]["phone"] for e in valid)

    dlq = read_all(kafka_bootstrap, settings.kafka.dead_letter_topic, expected=3)
    assert len(dlq) == 3
    infos = [parse_dead_letter_headers(m.headers()) for m in dlq]
    assert {(i.topic, i.stage) for i in infos} == {(topic, "decode")}
    originals = {(k, v) for k, v in garbage}
    decoded = {(m.key(), m.value()) for m, i in zip(dlq, infos, strict=True) if i.stage == "decode"}
    assert decoded == originals, "original key and value are kept"
    for m, i in zip(dlq, infos, strict=True):
        if i.stage == "decode":
            assert ("trace", b"abc") in m.headers(), "original headers are kept"
            assert (i.partition, i.offset) in seen
    assert metrics.registry.get_sample_value("kafka_twilio_records_consumed_total", {"topic": topic}) == 15


async def test_messages_to_one_recipient_arrive_in_offset_order_while_others_run_concurrently(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_settings: Callable[..., Settings],
) -> None:
    simulator.configure(latency_ms=15, latency_jitter_ms=14)  # reorders anything not kept in order
    topic = new_topic(partitions=2)
    events = [
        order_event(seq, user=f"user-{r}", phone=f"+1415555{r:04d}") for seq in range(25) for r in range(6)
    ]
    produce(kafka_bootstrap, topic, events)
    settings = service_settings([topic], CONSUMER_MAX_IN_FLIGHT=64)

    _, metrics = await run_until_idle(settings)

    received = simulator.messages()
    assert len(received) == len(events)
    by_recipient: dict[str, list[int]] = defaultdict(list)
    for m in received:
        by_recipient[m["To"]].append(int(m["Body"].rsplit(" ", 1)[1]))
    assert len(by_recipient) == 6
    for to, seqs in by_recipient.items():
        assert seqs == sorted(seqs), f"{to} received out of order: {seqs}"
    stats = simulator.stats()
    assert stats["peak_in_flight"] > 1, "different recipients were sent concurrently"
    assert metrics.registry.get_sample_value("kafka_twilio_in_flight") == 0


async def test_a_429_storm_loses_nothing_and_concurrency_recovers_afterwards(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_settings: Callable[..., Settings],
) -> None:
    simulator.configure(latency_ms=20, max_concurrency=4, retry_after_s=0.05)
    topic = new_topic(partitions=2)
    events = [order_event(n) for n in range(300)]
    produce(kafka_bootstrap, topic, events)
    settings = service_settings([topic], CONSUMER_MAX_IN_FLIGHT=64, CONSUMER_MAX_RETRIES=30)
    journal: Journal = []
    metrics = Metrics()
    service = Service(settings, Parts.real(settings), metrics=metrics, journal=lambda *r: journal.append(r),
                      exit_when_idle_s=1.5, handle_signals=False)  # fmt: skip
    run = asyncio.create_task(service.run())
    storm_limit = None
    for _ in range(600):
        await asyncio.sleep(0.05)
        if len(simulator.messages()) >= 100:
            storm_limit = metrics.registry.get_sample_value("kafka_twilio_concurrency_limit")
            simulator.configure(max_concurrency=0)  # the storm is over
            break
    assert storm_limit is not None, "the service made progress during the storm"
    # Requests on the wire when the storm ended may still bring 429s back: the lowest limit is the
    # storm's, whenever its last answer arrived.
    while not run.done():
        limit = metrics.registry.get_sample_value("kafka_twilio_concurrency_limit")
        storm_limit = min(storm_limit, limit if limit is not None else storm_limit)
        await asyncio.sleep(0.02)
    assert await asyncio.wait_for(run, 90) == 0

    sent = [m["Body"] for m in simulator.messages()]
    assert len(sent) == len(set(sent)) == 300, "nothing lost, nothing sent twice"
    assert all(results[0][1] == "sent" for *_, results in journal)
    throttled = simulator.stats()["answers"].get("429/20429", 0)
    assert throttled > 0, "the simulator really answered 429s"
    assert (
        metrics.registry.get_sample_value("kafka_twilio_retries_total", {"reason": "twilio_20429"})
        == throttled
    )
    assert storm_limit < 64, "the adaptive limit backed off during the storm"
    final = metrics.registry.get_sample_value("kafka_twilio_concurrency_limit")
    assert final is not None
    assert final > storm_limit, "and grew again once the storm was over"


async def test_sigterm_under_load_drains_exits_zero_and_a_restart_loses_and_repeats_nothing(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_env: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    simulator.configure(latency_ms=80, latency_jitter_ms=40)
    topic = new_topic(partitions=3)
    events = [order_event(n) for n in range(1500)]
    produce(kafka_bootstrap, topic, events)
    env = {**os.environ, **service_env([topic], CONSUMER_MAX_IN_FLIGHT=64, CONSUMER_DRAIN_GRACE_S=10)}
    command = [sys.executable, "-m", "consumer.cli", "run"]

    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=out)  # noqa: ASYNC220
        for _ in range(600):
            await asyncio.sleep(0.05)
            if len(simulator.messages()) >= 300 or first.poll() is not None:
                break
        assert first.poll() is None, log.read_text()[-2000:]
        first.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(first.wait, 60)
    assert code == 0, log.read_text()[-2000:]
    stderr = log.read_text()
    assert "draining in-flight sends" in stderr
    assert "grace period over" not in stderr, "every request on the wire finished within the grace period"
    sent_before_restart = len(simulator.messages())
    assert sent_before_restart < len(events), "the SIGTERM really came under load"

    second = await asyncio.to_thread(
        subprocess.run,
        [*command, "--exit-when-idle", "2"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 0, second.stderr.decode()[-2000:]

    bodies = Counter(m["Body"] for m in simulator.messages())
    assert len(bodies) == len(events), "nothing lost"
    duplicates = sum(n - 1 for n in bodies.values())
    assert duplicates == 0, f"{duplicates} messages were sent twice"
    assert committed(kafka_bootstrap, env["KAFKA_GROUP_ID"], topic, 3) == offsets_of(
        kafka_bootstrap, topic, 3
    )


async def test_the_sent_ledger_stops_duplicates_within_a_run_and_after_a_restart_from_scratch(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_env: Callable[..., dict[str, str]],
) -> None:
    topic = new_topic(partitions=2)
    events = [order_event(n) for n in range(20)]
    # Engage re-sends the same event: same messageId, same recipient -> the same de-duplication key.
    produce(kafka_bootstrap, topic, events + events[:5])
    env = service_env([topic])
    journal, metrics = await run_until_idle(load_settings(environ=env))
    reasons = Counter(results[0][2] for *_, results in journal)
    assert reasons == {"accepted": 20, "duplicate": 5}
    # The sent entry's write (201 -> acknowledged) is measured for every send, as is the intent's.
    assert metrics.registry.get_sample_value("kafka_twilio_ledger_write_seconds_count") == 20
    assert metrics.registry.get_sample_value("kafka_twilio_intent_write_seconds_count") == 20
    window_s = metrics.registry.get_sample_value("kafka_twilio_ledger_write_seconds_sum")
    assert window_s is not None
    assert 0 < window_s / 20 < 1.0

    # A new consumer group reads everything again; the ledger (restored from Kafka) knows it all.
    again, _ = await run_until_idle(
        load_settings(environ={**env, "KAFKA_GROUP_ID": env["KAFKA_GROUP_ID"] + "-2"})
    )
    assert Counter(results[0][2] for *_, results in again) == {"duplicate": 25}
    assert len(simulator.messages()) == 20


async def test_a_rebalance_to_a_second_replica_drains_commits_and_neither_loses_nor_repeats(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_settings: Callable[..., Settings],
) -> None:
    simulator.configure(latency_ms=40, latency_jitter_ms=20)
    topic = new_topic(partitions=4)
    events = [order_event(n) for n in range(800)]
    produce(kafka_bootstrap, topic, events)
    # Slow enough (about 200/s) that the second replica joins mid-stream; a small buffer pauses partitions.
    settings = service_settings([topic], CONSUMER_MAX_IN_FLIGHT=8, CONSUMER_MAX_BUFFERED=100)
    journals: list[Journal] = [[], []]
    replicas = [
        Service(
            settings,
            Parts.real(settings),
            journal=lambda *r, j=j: j.append(r),
            exit_when_idle_s=2,
            handle_signals=False,
        )
        for j in journals
    ]
    first = asyncio.create_task(replicas[0].run())
    for _ in range(400):
        await asyncio.sleep(0.05)
        if len(simulator.messages()) >= 150:
            break
    second = asyncio.create_task(replicas[1].run())
    assert await asyncio.wait_for(asyncio.gather(first, second), 120) == [0, 0]

    bodies = Counter(m["Body"] for m in simulator.messages())
    assert len(bodies) == len(events), "nothing lost"
    assert max(bodies.values()) == 1, "nothing sent twice across the rebalance"
    assert journals[1], "the second replica really took over partitions"
    finished = Counter((p, o) for j in journals for _, p, o, _ in j)
    assert len(finished) == len(events)
    assert committed(kafka_bootstrap, settings.kafka.group_id, topic, 4) == offsets_of(
        kafka_bootstrap, topic, 4
    )


async def test_an_unexpected_error_in_a_stage_dead_letters_that_record_and_the_partition_goes_on(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_settings: Callable[..., Settings],
) -> None:
    topic = new_topic()
    produce(kafka_bootstrap, topic, [order_event(n) for n in range(6)])
    settings = service_settings([topic])
    parts = Parts.real(settings)
    real = parts.decoder

    class BuggyDecoder:
        """The real decoder with a bug that strikes one record."""

        def decode(self, value: Any, headers: Any = None, *, record: Any = None) -> Any:
            event = real.decode(value, headers, record=record)
            if event.properties.get("seq") == 3:
                raise ValueError("a bug in decode")
            return event

        def __getattr__(self, name: str) -> Any:  # the rest of the decoder (look-ups, close) is real
            return getattr(real, name)

    parts.decoder = BuggyDecoder()
    journal: Journal = []
    service = Service(settings, parts, journal=lambda *r: journal.append(r), exit_when_idle_s=1.5,
                      handle_signals=False)  # fmt: skip
    assert await asyncio.wait_for(service.run(), 90) == 0

    outcomes = {o: results[0][1:] for _, _, o, results in journal}
    assert outcomes[3] == ("dead_lettered", "internal")
    assert all(outcomes[n] == ("sent", "accepted") for n in (0, 1, 2, 4, 5))
    assert committed(kafka_bootstrap, settings.kafka.group_id, topic, 1) == {0: 6}
