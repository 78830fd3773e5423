"""The service: Kafka in, Twilio out, offsets committed only behind finished records.

    poll (the Kafka thread) ─► Intake: decode ─► match ─► render ─► Dispatcher ─► Delivery
    outcome ─► OffsetTracker ─► commit (highest contiguous finished + 1)

`Service` owns the lifecycle (start-up checks, the poll loop, upkeep, shutdown); the stages it drives
are built by `consumer.service.parts.wire` from the collaborators it is given (`Parts`).
Rebalances and SIGTERM drain (see `consumer.service.assignments`); back-pressure pauses partitions
(`consumer.service.backpressure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from consumer import __version__
from consumer.errors import KafkaError
from consumer.kafka.clients import service_consumer_config, settle, take
from consumer.kafka.commits import caught_up, commit
from consumer.kafka.errors import PARTITION_EOF, kafka_error
from consumer.kafka.offsets import OffsetTracker
from consumer.kafka.reports import ReportPump
from consumer.kafka.thread import KafkaThread
from consumer.mappings.load import Loaded, load_files
from consumer.mappings.match import MatchIndex
from consumer.mappings.model import Mapping, TemplateContent
from consumer.mappings.paths import start_sources
from consumer.metrics import Metrics
from consumer.pipeline.correlation import with_default_callback
from consumer.service.health import Health, build_app, start_server
from consumer.service.intake import EventDecoder
from consumer.service.parts import Parts, Runtime, producer_for, wire
from consumer.service.records import Outcome, RecordState
from consumer.service.upkeep import Upkeep, wait_for_twilio
from consumer.settings import Settings
from consumer.state.changelog import Changelog
from consumer.state.suppression_topic import open_suppressions
from consumer.twilio.content import verify_templates

log = logging.getLogger(__name__)

POLL_BATCH = 500
POLL_TIMEOUT_S = 0.1
PRUNE_INTERVAL_S = 60.0
STARTUP_TWILIO_WAIT_S = 60.0

#: Called with (topic, partition, offset, outcomes) when a record is finished: tests and the demo use it.
Journal = Any  # Callable[[str, int, int, list[Outcome]], None]


class Service:
    """One consumer replica. `await run()` until `request_stop()` (SIGTERM) or, optionally, idle."""

    def __init__(
        self,
        settings: Settings,
        parts: Parts,
        *,
        metrics: Metrics | None = None,
        journal: Journal | None = None,
        exit_when_idle_s: float | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.settings = settings
        self.parts = parts
        self.metrics = metrics or Metrics()
        self.journal = journal
        self.exit_when_idle_s = exit_when_idle_s
        self.handle_signals = handle_signals
        self.tracker = OffsetTracker()
        self.stopping = asyncio.Event()
        self.thread = KafkaThread()
        self.metrics_port: int | None = None
        self.runtime: Runtime | None = None  # built once Kafka answers
        self.health = Health(self.metrics)
        self._idle_since: float | None = None
        self._per_topic: dict[str, tuple[Any, Any]] = {}

    # -- lifecycle --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stopping.set()

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
        _static_metrics(self.metrics, self.settings)
        loaded = load_files(self.settings.service.mappings)
        mappings = with_default_callback(loaded.mappings, self.settings.service)
        client = self.parts.client
        try:
            await _use_sources(loaded, self.parts.decoder)
            await wait_for_twilio(client, STARTUP_TWILIO_WAIT_S)
            self.health.credentials_ok = True
            await verify_templates(client, _template_needs(mappings))
            app = build_app(self.metrics.registry, self.readiness, lambda: True, self.readiness_reasons)
            runner, self.metrics_port = await start_server(
                app, self.settings.service.metrics_host, self.settings.service.metrics_port
            )
            log.info("metrics, /healthz and /readyz on port %d", self.metrics_port)
            try:
                return await self._consume(mappings)
            finally:
                await runner.cleanup()
        finally:
            await client.aclose()
            self.parts.decoder.close()
            self.thread.shutdown()

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        rt = self.runtime
        checks = {
            "partitions_assigned": rt is not None and bool(rt.assignments.assigned),
            "broker_reachable": self.health.broker_ok,
            "twilio_credentials": self.health.credentials_ok
            and (rt is None or not rt.delivery.halting.halted),
            "twilio_available": rt is None or not rt.delivery.breaker.open,
            "schema_registry": rt is None or not rt.intake.waiting,
            "ledger_restored": rt is None or not rt.state.restoring,
        }
        ready = all(checks.values())
        self.metrics.ready.set(1 if ready else 0)
        return ready, checks

    def readiness_reasons(self) -> dict[str, str]:
        """Why a check fails, where it can say more than false (/readyz shows it)."""
        return {"schema_registry": self.runtime.intake.waiting} if self.runtime is not None else {}

    async def _consume(self, mappings: tuple[Mapping, ...]) -> int:
        s, parts = self.settings, self.parts
        producer = producer_for(parts)
        try:
            changelog = await self.thread.call(
                Changelog.open, parts.kafka, producer, s.kafka.dedup_topic, s.kafka.topics
            )
        except KafkaError as exc:
            raise KafkaError(
                f"cannot use Kafka at {s.kafka.bootstrap_servers} ({exc.message}): check "
                "KAFKA_BOOTSTRAP_SERVERS, the KAFKA_CLIENT_* security settings, and that this client may "
                f"describe and create the ledger topic {s.kafka.dedup_topic!r}",
                code=exc.code,
            ) from exc
        suppressions = await self.thread.call(open_suppressions, parts.kafka, producer, s, self.metrics)
        rt = self.runtime = wire(
            s, parts, producer=producer, changelog=changelog, index=MatchIndex(mappings), mappings=mappings,
            metrics=self.metrics, tracker=self.tracker, loop=asyncio.get_running_loop(),
            on_record_done=self._record_done, settle=self._settle,
            commit=lambda consumer, offsets: commit(consumer, offsets, self.metrics),
            on_assigned=self.health.broker_answered, suppressions=suppressions,
        )  # fmt: skip
        rt.consumer = parts.kafka.consumer(service_consumer_config(s.kafka, self.health.on_client_error))
        a = rt.assignments
        await self.thread.call(
            rt.consumer.subscribe,
            s.kafka.topics,
            on_assign=a.on_assign,
            on_revoke=a.on_revoke,
            on_lost=a.on_lost,
        )
        if self.handle_signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                for sig in (signal.SIGTERM, signal.SIGINT):
                    asyncio.get_running_loop().add_signal_handler(sig, self.request_stop)
        upkeep = Upkeep(
            rt, rt.consumer, thread=self.thread, metrics=self.metrics, tracker=self.tracker,
            health=self.health, client=parts.client, probe_topic=s.kafka.topics[0],
        )  # fmt: skip
        helpers = [
            asyncio.create_task(ReportPump(rt.producer).run()),
            asyncio.create_task(upkeep.watch_credentials()),
            asyncio.create_task(upkeep.probe_twilio()),
        ]
        try:
            await self._poll_loop(rt, upkeep)
        finally:
            await self._shutdown(rt, helpers)
            await self.thread.call(suppressions.close)
        return 0

    async def _shutdown(self, rt: Runtime, helpers: list[asyncio.Task[None]]) -> None:
        grace = self.settings.service.drain_grace_s
        log.info("stopping: draining in-flight sends (up to %.0f s)", grace)
        if not await rt.dispatcher.drain(None, grace):
            unfinished = rt.dispatcher.cancel(None)
            log.warning(
                "grace period over; %d sends left unfinished (their offsets stay uncommitted)", unfinished
            )
        await self._settle(10.0)
        await self._commit(rt)
        # Stopped before the flush below, so delivery reports are never served by two threads at once.
        for task in helpers:
            task.cancel()
        assert rt.consumer is not None
        await self.thread.call(rt.consumer.close)
        await self.thread.call(rt.producer.flush, 10)
        rt.state.flush()  # on the loop, where the checkpoints move; close flushes again (nothing left)
        await self.thread.call(rt.state.close)  # after the consumer: its last revoke may still write
        # Let go of the clients now: one kept alive keeps reconnecting (and logging) after the run.
        self.runtime = None

    # -- the poll loop ----------------------------------------------------------------------------

    async def _poll_loop(self, rt: Runtime, upkeep: Upkeep) -> None:
        s = self.settings.service
        assert rt.consumer is not None
        last_commit = last_lag = last_prune = time.monotonic()
        while not self.stopping.is_set():
            await self._backpressure(rt)
            messages = await self.thread.call(take, rt.consumer, POLL_BATCH, POLL_TIMEOUT_S)
            for message in messages:
                self._accept(rt, message)
            if not messages:
                await asyncio.sleep(0)  # let sends progress when the partitions are paused or empty
            now = time.monotonic()
            if now - last_commit >= s.commit_interval_s:
                await self._commit(rt)
                last_commit = now
            if now - last_lag >= s.lag_interval_s:
                await upkeep.lag()
                last_lag = now
            if now - last_prune >= PRUNE_INTERVAL_S:
                _prune(rt, self.metrics)
                last_prune = now
            if self.exit_when_idle_s is not None:
                await self._check_idle(rt, now, bool(messages))

    def _accept(self, rt: Runtime, message: Any) -> None:
        err = message.error()
        if err is not None:
            if err.name() != PARTITION_EOF:
                self.health.count("consumer", kafka_error(err, "Kafka consumer error"))
            return
        record = RecordState.of(message, rt.assignments.generation((message.topic(), message.partition())))
        self.tracker.track(record.tp, record.offset)
        self._topic_counters(record.topic)[0].inc()
        rt.intake.accept(record)

    async def _settle(self, timeout_s: float) -> None:
        """Wait until every ledger and dead-letter write so far is acknowledged (or `timeout_s`): the
        sent entries held back to share a request (consumer.state.changelog) are produced first."""
        rt = self.runtime
        assert rt is not None
        rt.state.changelog.flush_deferred()
        await settle(rt.producer, timeout_s)

    def _record_done(self, record: RecordState) -> None:
        rt = self.runtime
        if rt is None or not rt.assignments.owns(record):
            return  # revoked (or revoked and assigned again) since it was consumed
        self.tracker.finish(record.tp, record.offset)
        self._topic_counters(record.topic)[1].inc()
        if self.journal is not None:
            outcomes: list[Outcome] = list(record.outcomes)
            self.journal(record.topic, record.partition, record.offset, outcomes)

    def _topic_counters(self, topic: str) -> tuple[Any, Any]:
        """(records consumed, records finished) of a topic: labelled once, counted per record."""
        counters = self._per_topic.get(topic)
        if counters is None:
            m = self.metrics
            counters = self._per_topic[topic] = (
                m.records_consumed.labels(topic),
                m.records_finished.labels(topic),
            )
        return counters

    async def _backpressure(self, rt: Runtime) -> None:
        pending = self.tracker.pending()
        self.metrics.buffered_records.set(pending)
        assigned = len(rt.assignments.assigned)
        action = rt.backpressure.decide(pending, assigned, hold=rt.delivery.breaker.open)
        consumer = rt.consumer
        assert consumer is not None
        if action == "pause":
            await self.thread.call(lambda: consumer.pause(consumer.assignment()))
        elif action == "resume":
            await self.thread.call(lambda: consumer.resume(consumer.assignment()))
        self.metrics.paused_partitions.set(assigned if rt.backpressure.paused else 0)

    async def _check_idle(self, rt: Runtime, now: float, busy: bool) -> None:
        """Stop once idle for `exit_when_idle_s` and the group has committed every partition of the
        topics to its end: not merely this replica's partitions (a dead member may hold others)."""
        idle = (
            not busy
            and rt.assignments.assigned
            and self.tracker.pending() == 0
            and not self.tracker.committable()
        )
        if not idle:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= (self.exit_when_idle_s or 0):
            assert rt.consumer is not None
            if await self.thread.call(caught_up, rt.consumer, self.settings.kafka.topics):
                log.info("caught up on every partition and idle; stopping")
                self.request_stop()
            else:
                self._idle_since = now  # another member still has work: look again later

    # -- upkeep -----------------------------------------------------------------------------------

    async def _commit(self, rt: Runtime) -> None:
        rt.state.flush()  # the ledger's checkpoints, at the same pace as the offsets
        offsets = self.tracker.committable()
        if offsets:
            # Tracker state is only touched on the event loop; the Kafka thread only talks to Kafka.
            assert rt.consumer is not None
            self.tracker.mark_committed(await self.thread.call(commit, rt.consumer, offsets, self.metrics))


def _prune(rt: Runtime, metrics: Metrics) -> None:
    """Forget expired ledger entries (they no longer prevent anything; without this the ledger would
    hold every send since the partition was assigned) and report the ledger's size."""
    metrics.ledger_expired.inc(rt.state.prune())
    metrics.ledger_entries.set(len(rt.state.ledger))
    metrics.ledger_disk_bytes.set(rt.state.store.disk_bytes())
    metrics.intents_in_doubt.set(len(rt.state.ledger.restored_in_doubt))


def _static_metrics(metrics: Metrics, settings: Settings) -> None:
    """Series that hold for the whole run: the version, the delay objective the alert compares with."""
    metrics.build_info.info({"version": __version__})
    metrics.delay_objective.set(settings.service.delay_objective_s)


async def _use_sources(loaded: Loaded, decoder: EventDecoder) -> None:
    """Check the sources' paths against their writer schemas (the registry asked off the loop) and hand
    them to the decoder, before the first record; MappingError lists every bad path."""
    if loaded.sources:
        for note in await asyncio.to_thread(start_sources, loaded, decoder):
            log.info("sources: %s", note)


def _template_needs(mappings: tuple[Mapping, ...]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Each Content Template a mapping sends: it must exist, fit the channel, take the variables."""
    return [
        (m.id, m.content.content_sid, str(m.channel), tuple(m.content.variables))
        for m in mappings
        if m.enabled and isinstance(m.content, TemplateContent)
    ]
