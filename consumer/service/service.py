"""The service: Kafka in, Twilio out, offsets committed only behind finished records.

    poll (one thread: every Kafka consumer call) ─► decode ─► match ─► render ─► Dispatcher
    Dispatcher (event loop) ─► outcome ─► OffsetTracker ─► commit (highest contiguous finished + 1)

Back-pressure: when too many records are consumed but unfinished, every assigned partition is paused
(librdkafka drops its prefetched messages, so memory stays bounded) and resumed at half the limit.
Rebalances (cooperative-sticky) and SIGTERM drain: the revoked partitions' sends get the grace period
to finish, their finished offsets are committed, the rest is left for the next owner (the ledger keeps
what was sent from being sent again).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from consumer import __version__
from consumer.errors import (
    ConsumerError,
    DecodeError,
    KafkaError,
    MappingError,
    RecordRef,
    RenderError,
    SettingsError,
    TwilioError,
)
from consumer.events.decode import Decoder, make_registry_client
from consumer.kafka.deadletter import DeadLetterWriter
from consumer.kafka.offsets import OffsetTracker
from consumer.logs import configure_logging
from consumer.mappings.load import load_mappings
from consumer.mappings.match import MatchIndex
from consumer.mappings.model import Mapping, TemplateContent
from consumer.metrics import Metrics
from consumer.pipeline.pacing import AdaptiveLimit, SenderLimits
from consumer.pipeline.render import Skip, render
from consumer.service.dispatcher import Dispatcher, RecordState, cap_counter_key
from consumer.service.health import build_app, start_server
from consumer.settings import Settings, load_settings
from consumer.state.ledger import DedupStore, LedgerEntry
from consumer.twilio.client import TwilioClient
from consumer.twilio.content import verify_templates

log = logging.getLogger(__name__)

POLL_BATCH = 500
POLL_TIMEOUT_S = 0.1
LAG_INTERVAL_S = 5.0
CREDENTIAL_RECHECK_S = 15.0
PRUNE_INTERVAL_S = 60.0
# Young-generation size and the two promotion ratios for gc.set_threshold (see tune_gc).
GC_THRESHOLDS = (20_000, 20, 20)

#: Called with (topic, partition, offset, outcomes) when a record is finished: tests and the demo use it.
Journal = Callable[[str, int, int, list[tuple[str, str, str]]], None]


class Service:
    """One consumer replica. `await run()` until `request_stop()` (SIGTERM) or, optionally, idle."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        journal: Journal | None = None,
        exit_when_idle_s: float | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.settings = settings
        self.handle_signals = handle_signals
        self.metrics = metrics or Metrics()
        self.journal = journal
        self.exit_when_idle_s = exit_when_idle_s
        self.tracker = OffsetTracker()
        self.stopping = asyncio.Event()
        self.metrics_port: int | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kafka-poll")
        self._assigned: set[tuple[str, int]] = set()
        # Bumped on every assignment: a late outcome from before a revoke must not finish the same
        # offset in a later assignment of the partition.
        self._generation: dict[tuple[str, int], int] = {}
        self._paused = False
        self._paused_count = 0
        self._broker_ok = True
        self._credentials_ok = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_since: float | None = None
        self._per_topic: dict[str, tuple[Any, Any]] = {}
        self._evictions_reported = 0
        self._cap_horizon_s = 0.0

    # -- lifecycle --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stopping.set()

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self.metrics.build_info.info({"version": __version__})
        mappings = load_mappings(s.service.mappings)
        self.index = MatchIndex(mappings)
        self._cap_horizon_s = max(
            (m.policies.frequency_cap.per for m in mappings if m.policies.frequency_cap is not None),
            default=0.0,
        )
        registry = (
            make_registry_client(s.kafka.schema_registry_url, s.kafka.schema_registry_user,
                                 s.kafka.schema_registry_password.get_secret_value()
                                 if s.kafka.schema_registry_password else "")
            if s.kafka.schema_registry_url else None
        )  # fmt: skip
        self.decoder = Decoder(
            schemas_dir=s.service.schemas_dir, encoding=s.service.event_encoding, registry=registry
        )
        self.client = TwilioClient(s.twilio, max_connections=max(s.service.max_in_flight, 16))
        try:
            await self.client.check_credentials()
            self._credentials_ok = True
            await self._check_templates(mappings)
            runner = await self._start_http()
            try:
                return await self._consume()
            finally:
                await runner.cleanup()
        finally:
            await self.client.aclose()
            self._pool.shutdown(wait=False)

    async def _start_http(self) -> Any:
        app = build_app(self.metrics.registry, self.readiness, lambda: True)
        runner, self.metrics_port = await start_server(
            app, self.settings.service.metrics_host, self.settings.service.metrics_port
        )
        log.info("metrics, /healthz and /readyz on port %d", self.metrics_port)
        return runner

    async def _check_templates(self, mappings: tuple[Mapping, ...]) -> None:
        """Each Content Template exists, fits its mapping's channel, and takes the mapped variables."""
        needs = [
            (m.id, m.content.content_sid, str(m.channel), tuple(m.content.variables))
            for m in mappings
            if m.enabled and isinstance(m.content, TemplateContent)
        ]
        await verify_templates(self.client, needs)

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        # The dispatcher exists only once Kafka is set up; a probe may come earlier.
        dispatcher: Dispatcher | None = getattr(self, "dispatcher", None)
        checks = {
            "partitions_assigned": bool(self._assigned),
            "broker_reachable": self._broker_ok,
            "twilio_credentials": self._credentials_ok and (dispatcher is None or not dispatcher.halted),
        }
        ready = all(checks.values())
        self.metrics.ready.set(1 if ready else 0)
        return ready, checks

    # -- Kafka ------------------------------------------------------------------------------------

    async def _consume(self) -> int:
        s = self.settings
        # librdkafka's own log lines go through logging (JSON, masked) instead of raw stderr.
        base: dict[str, Any] = {**s.kafka.client_config(), "logger": logging.getLogger("librdkafka")}
        self.producer = Producer({**base, "linger.ms": "5", "enable.idempotence": "true"})
        try:
            partitions = await self._in_poll(
                DedupStore.ensure_topic, base, s.kafka.dedup_topic, s.kafka.topics
            )
        except KafkaException as exc:
            raise KafkaError(
                f"cannot use Kafka at {s.kafka.bootstrap_servers} ({exc.args[0] if exc.args else exc}): "
                "check KAFKA_BOOTSTRAP_SERVERS, the KAFKA_CLIENT_* security settings, and that this client "
                f"may describe and create the ledger topic {s.kafka.dedup_topic!r}"
            ) from exc
        self.dedup = DedupStore(
            base, self.producer, s.kafka.dedup_topic, partitions, max_entries=s.service.ledger_max_entries
        )
        self.dispatcher = Dispatcher(
            sender=self.client, metrics=self.metrics, dedup=self.dedup,
            dead_letters=DeadLetterWriter(self.producer, s.kafka.dead_letter_topic),
            limits=SenderLimits(overrides=s.service.sender_rates, unit=s.service.rate_unit),
            adaptive=AdaptiveLimit(s.service.max_in_flight, minimum=min(4, s.service.max_in_flight)),
            max_retries=s.service.max_retries, retry_base_s=s.service.retry_base_s,
            retry_cap_s=s.service.retry_cap_s, on_record_done=self._record_done,
        )  # fmt: skip
        self.consumer = Consumer(
            {
                **base,
                "group.id": s.kafka.group_id,
                "enable.auto.commit": "false",
                "enable.auto.offset.store": "false",
                "auto.offset.reset": s.kafka.auto_offset_reset,
                "partition.assignment.strategy": "cooperative-sticky",
                # Bound librdkafka's own prefetch buffer: memory must not grow with the backlog.
                # The real buffer is ours (CONSUMER_MAX_BUFFERED records, seconds of sending); the
                # prefetch only has to cover a fetch round trip. Measured with a 1M-record backlog,
                # 32768 or 8192 held ~105 MB more than the same consumer on a 100k backlog; 2048
                # holds ~20 MB whatever the backlog (bench/bench_e2e.py measures the whole service).
                "queued.max.messages.kbytes": "2048",
                "error_cb": self._on_kafka_error,
            }
        )
        await self._in_poll(
            self.consumer.subscribe, s.kafka.topics,
            on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self.request_stop)
        pump = asyncio.create_task(self._pump_producer())
        watch = asyncio.create_task(self._watch_credentials())
        try:
            await self._poll_loop()
        finally:
            log.info("stopping: draining in-flight sends (up to %.0f s)", s.service.drain_grace_s)
            drained = await self.dispatcher.drain(None, s.service.drain_grace_s)
            if not drained:
                log.warning("grace period over; %d sends left unfinished (their offsets stay uncommitted)",
                            self.dispatcher.cancel(None))  # fmt: skip
            await self._settle_producer(10.0)
            await self._commit()
            # Stopped before the flush below, so delivery reports are never served by two threads at once.
            for task in (pump, watch):
                task.cancel()
            await self._in_poll(self.consumer.close)
            await self._in_poll(self.producer.flush, 10)
        return 0

    async def _in_poll(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a Kafka client call on the poll thread: every consumer call happens on that one thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def _poll_loop(self) -> None:
        s = self.settings.service
        last_commit = last_lag = last_prune = time.monotonic()
        while not self.stopping.is_set():
            await self._backpressure()
            messages = await self._in_poll(self.consumer.consume, POLL_BATCH, POLL_TIMEOUT_S)
            for message in messages:
                self._accept(message)
            if not messages:
                await asyncio.sleep(0)  # let sends progress when the partitions are paused or empty
            now = time.monotonic()
            if now - last_commit >= s.commit_interval_s:
                await self._commit()
                last_commit = now
            if now - last_lag >= LAG_INTERVAL_S:
                await self._in_poll(self._update_lag)
                last_lag = now
            if now - last_prune >= PRUNE_INTERVAL_S:
                # Expired ledger entries no longer prevent anything; without this the ledger
                # would hold every send since the partition was assigned.
                self._prune(time.time())
                last_prune = now
            if self.exit_when_idle_s is not None:
                self._check_idle(now, bool(messages))

    def _prune(self, now: float) -> None:
        ledger = self.dedup.ledger
        ledger.prune(now)
        self.dispatcher.caps.prune(now, self._cap_horizon_s)
        self.metrics.ledger_entries.set(len(ledger))
        if ledger.evictions > self._evictions_reported:
            self.metrics.ledger_evictions.inc(ledger.evictions - self._evictions_reported)
            self._evictions_reported = ledger.evictions

    def _check_idle(self, now: float, busy: bool) -> None:
        idle = not busy and self._assigned and self.tracker.pending() == 0 and not self.tracker.committable()
        if not idle:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= (self.exit_when_idle_s or 0):
            log.info("caught up and idle; stopping")
            self.request_stop()

    async def _backpressure(self) -> None:
        pending = self.tracker.pending()
        self.metrics.buffered_records.set(pending)
        limit = self.settings.service.max_buffered
        if pending >= limit and (not self._paused or self._paused_count != len(self._assigned)):
            # Also re-pauses when a rebalance added partitions while paused: they start unpaused.
            await self._in_poll(lambda: self.consumer.pause(self.consumer.assignment()))
            self._paused = True
            self._paused_count = len(self._assigned)
        elif self._paused and pending <= limit // 2:
            await self._in_poll(lambda: self.consumer.resume(self.consumer.assignment()))
            self._paused = False
        self.metrics.paused_partitions.set(len(self._assigned) if self._paused else 0)

    def _accept(self, message: Message) -> None:
        err = message.error()
        if err is not None:
            if err.code() != RdKafkaError._PARTITION_EOF:
                log.warning("Kafka consumer error: %s", err.str())
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return  # only error events lack coordinates, and those returned above
        self.tracker.track((topic, partition), offset)
        self._topic_counters(topic)[0].inc()
        value, headers = message.value(), message.headers()
        record = RecordState(topic, partition, offset, message.key(), value, headers)
        record.generation = self._generation.get(record.tp, 0)
        ref = RecordRef(topic, partition, offset)
        try:
            event = self.decoder.decode(value, headers, record=ref)
        except DecodeError as error:
            record.remaining = 1
            self.dispatcher.dead_letter(record, error, error.reason, None)
            return
        except Exception as exc:  # noqa: BLE001  a decoder bug must dead-letter one record, not crash-loop
            record.remaining = 1
            bug = DecodeError(
                f"unexpected {type(exc).__name__} while decoding: {exc}", reason="internal", record=ref
            )
            self.dispatcher.dead_letter(record, bug, bug.reason, None)
            return
        record.message_id = event.message_id
        mappings = self.index.match(event)
        if not mappings:
            record.remaining = 1
            self.dispatcher.finish(record, "", "skipped", "no_mapping")
            return
        record.remaining = len(mappings)
        now = datetime.now(UTC)
        region = self.settings.service.default_region
        for mapping in mappings:
            try:
                result = render(event, mapping, default_region=region, now=now)
            except RenderError as error:
                self.dispatcher.dead_letter(record, error.with_record(ref), error.reason, mapping.id)
                continue
            except Exception as exc:  # noqa: BLE001  a render bug must dead-letter, not stop the partition
                render_bug = RenderError(
                    f"unexpected {type(exc).__name__} while rendering: {exc}",
                    reason="internal", mapping_id=mapping.id, record=ref,
                )  # fmt: skip
                self.dispatcher.dead_letter(record, render_bug, render_bug.reason, mapping.id)
                continue
            if isinstance(result, Skip):
                self.dispatcher.finish(record, mapping.id, "skipped", result.reason)
            else:
                self.dispatcher.submit(record, result)

    def _record_done(self, record: RecordState) -> None:
        if record.tp not in self._assigned or record.generation != self._generation.get(record.tp, 0):
            return
        self.tracker.finish(record.tp, record.offset)
        self._topic_counters(record.topic)[1].inc()
        if self.journal is not None:
            self.journal(record.topic, record.partition, record.offset, list(record.outcomes))

    def _topic_counters(self, topic: str) -> tuple[Any, Any]:
        """(records consumed, records finished) of a topic: labelled once, counted per record."""
        counters = self._per_topic.get(topic)
        if counters is None:
            m = self.metrics
            counters = (m.records_consumed.labels(topic), m.records_finished.labels(topic))
            self._per_topic[topic] = counters
        return counters

    async def _commit(self) -> None:
        offsets = self.tracker.committable()
        if not offsets:
            return
        try:
            await self._in_poll(self._commit_sync, offsets)
        except KafkaException as exc:
            self.metrics.commits.labels("failed").inc()
            log.warning("offset commit failed (will retry): %s", exc)
            return
        # Tracker state is only touched on the event loop; the poll thread only talks to Kafka.
        self.tracker.mark_committed(offsets)

    def _commit_sync(self, offsets: dict[tuple[str, int], int]) -> None:
        self.consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )
        self.metrics.commits.labels("ok").inc()

    def _update_lag(self) -> None:
        if not self._broker_ok:
            # librdkafka reports "all brokers down" but never that one is back, and a short outage
            # causes no rebalance: ask a broker, or readiness would stay false until the next one.
            try:
                self.consumer.list_topics(self.settings.kafka.topics[0], timeout=1.0)
                self._broker_ok = True
            except KafkaException:
                pass
        for topic, partition in list(self._assigned):
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except KafkaException:
                continue
            committed = self.tracker.committed((topic, partition))
            if high >= 0 and committed is not None:
                self.metrics.consumer_lag.labels(topic, str(partition)).set(max(0, high - committed))

    async def _settle_producer(self, timeout_s: float) -> None:
        """Wait for outstanding ledger and dead-letter writes, serving their reports on this loop,
        so records whose writes were acknowledged are finished before the final commit."""
        deadline = time.monotonic() + timeout_s
        while len(self.producer) > 0 and time.monotonic() < deadline:
            self.producer.poll(0)
            await asyncio.sleep(0.01)

    async def _pump_producer(self) -> None:
        """Serve delivery reports (dead letters, ledger writes) on the event loop."""
        while True:
            if self.producer.poll(0) == 0:
                await asyncio.sleep(0.005)
            else:
                await asyncio.sleep(0)

    async def _watch_credentials(self) -> None:
        while True:
            await asyncio.sleep(CREDENTIAL_RECHECK_S)
            if not self.dispatcher.halted:
                continue
            try:
                await self.client.check_credentials()
            except TwilioError as error:
                log.error("Twilio credential check still failing: %s", error.message)
                continue
            self.dispatcher.resume()

    def _on_kafka_error(self, err: RdKafkaError) -> None:
        self._broker_ok = err.code() != RdKafkaError._ALL_BROKERS_DOWN
        log.warning("Kafka client: %s", err.str())

    # -- rebalance callbacks: run on the poll thread, inside consume() ---------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [p.partition for p in partitions]
        now = time.time()
        restored = self.dedup.read(numbers)
        assert self._loop is not None
        # Applied on the loop before the new partitions' records (FIFO), so the ledger is complete.
        tps = [(p.topic, p.partition) for p in partitions]
        self._loop.call_soon_threadsafe(self._assign, tps, restored, now)
        self._broker_ok = True
        log.info(
            "partitions assigned",
            extra={"partitions": sorted(f"{p.topic}[{p.partition}]" for p in partitions)},
        )

    def _assign(self, tps: list[tuple[str, int]], restored: dict[int, list[LedgerEntry]], now: float) -> None:
        for tp in tps:
            self._generation[tp] = self._generation.get(tp, 0) + 1
            self._assigned.add(tp)
        self.metrics.assigned_partitions.set(len(self._assigned))
        for slot, entries in restored.items():
            self.dedup.ledger.load(slot, entries, now)
            for entry in entries:
                if entry.cap_scope:
                    self.dispatcher.caps.add(cap_counter_key(entry.cap_scope, entry.recipient), entry.sent_at)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        assert self._loop is not None
        grace = self.settings.service.drain_grace_s
        future = asyncio.run_coroutine_threadsafe(self._release(tps, drain_s=grace), self._loop)
        try:
            offsets = future.result(timeout=grace + 5)
        except Exception:  # noqa: BLE001  a stuck drain must not stop the rebalance
            log.warning("revoked partitions did not drain in time; their offsets stay uncommitted")
            return
        if offsets:
            try:
                self._commit_sync(offsets)
            except KafkaException as exc:
                log.warning("commit on revoke failed: %s", exc)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so nothing is committed.
        assert self._loop is not None
        tps = {(p.topic, p.partition) for p in partitions}
        asyncio.run_coroutine_threadsafe(self._release(tps, drain_s=None), self._loop).result(timeout=30)

    async def _release(self, tps: set[tuple[str, int]], drain_s: float | None) -> dict[tuple[str, int], int]:
        """Let go of partitions on the loop: drain (when revoked), take their committable offsets, forget."""
        if drain_s is not None and not await self.dispatcher.drain(tps, drain_s):
            log.warning(
                "%d sends of revoked partitions cancelled after the grace period", self.dispatcher.cancel(tps)
            )
        self.dispatcher.cancel(tps)
        if drain_s is not None:
            # Ledger and dead-letter writes of what just finished must be acknowledged before their
            # offsets are committed: the next owner restores the ledger, and must see these sends.
            await self._settle_producer(5.0)
        offsets = (
            {tp: o for tp, o in self.tracker.committable().items() if tp in tps}
            if drain_s is not None
            else {}
        )
        for tp in tps:
            self.tracker.revoke(tp)
            self._assigned.discard(tp)
        for slot in {self.dedup.ledger.slot(p) for _, p in tps} - {
            self.dedup.ledger.slot(p) for _, p in self._assigned
        }:
            self.dedup.ledger.drop(slot)
        self.metrics.assigned_partitions.set(len(self._assigned))
        return offsets


def main(argv: list[str]) -> int:
    """`kafka-twilio run`: the service."""
    parser = argparse.ArgumentParser(
        prog="kafka-twilio run", description="Consume events and send Twilio messages."
    )
    parser.add_argument("--env-file", type=Path, help="read settings from this file (the environment wins)")
    parser.add_argument("--mappings", type=Path, help="mapping file (overrides CONSUMER_MAPPINGS)")
    parser.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                        help="stop after SECONDS with nothing left to do (batch runs, the demo)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env_file)
    except SettingsError as error:
        print(f"kafka-twilio: {error}", file=sys.stderr)
        return 2
    if args.mappings:
        settings.service.mappings = args.mappings
    configure_logging(settings.service.log_level)
    # httpx logs every request at INFO: a line per message sent is noise, and URLs carry account SIDs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run_service(Service(settings, exit_when_idle_s=args.exit_when_idle))


def run_service(service: Service) -> int:
    """Run the service to completion with the fastest available event loop; map errors to exit codes."""
    tune_gc()
    try:
        return _run(service.run())
    except MappingError as error:
        print(f"kafka-twilio: {error.message}", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except TwilioError as error:
        print(f"kafka-twilio: Twilio check failed: {error.message}", file=sys.stderr)
        return 3
    except ConsumerError as error:
        print(f"kafka-twilio: {error}", file=sys.stderr)
        return 1


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a process that runs the service.

    Thousands of buffered records keep ~a million objects alive, and with CPython's default
    thresholds full collections rescanned them (and every module, schema and phone-number table)
    several times a second: a fifth of the event loop's CPU at 2,000 messages/s (bench/bench_e2e.py).
    Freezing what start-up built and collecting the young generation every 20,000 allocations
    instead of 700 cuts that to ~2%; cycles are still collected, only less often.
    Process-wide, so only the process entry point calls it (not in-process tests).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _run(coro: Any) -> int:
    try:
        import uvloop
    except ImportError:
        result: int = asyncio.run(coro)
        return result
    code: int = uvloop.run(coro)
    return code
