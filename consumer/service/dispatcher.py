"""Send stage: per-recipient lanes, gates, rate limits, adaptive concurrency, retries, outcomes.

Every (record, mapping) pair submitted here ends in exactly one outcome (sent, skipped:<reason> or
dead_lettered:<reason>), and only after that outcome is durable (the ledger or dead-letter write
acknowledged by Kafka) is the pair's share of the record done. A record is finished when all its
pairs are; the service then lets the offset tracker advance.

Ordering: messages to one recipient from one partition go through a lane, a chain of futures, so
the second waits for the first (including its retries); other recipients run concurrently.

Retries: RETRYABLE errors (429/20429, queue full, connection refused) back off with full jitter,
each record on its own, without holding an in-flight slot while waiting. A MAY_HAVE_SENT error with an
HTTP answer (Twilio 5xx) is retried too, as Twilio advises, and counted as ambiguous; one without an
answer (a read timeout after the request was written) is dead-lettered with reason `ambiguous`,
never repeated blindly: resending could text someone twice, and `replay` is there once checked.
CONFIGURATION errors (bad credentials, sender not allowed) halt all sending until a credential
check passes again, so a broken key does not burn the backlog into the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer.errors import ConsumerError, ErrorClass, TwilioError
from consumer.kafka.deadletter import DeadLetterWriter, Headers
from consumer.metrics import Metrics
from consumer.pipeline.gates import FrequencyCaps, quiet_until
from consumer.pipeline.pacing import AdaptiveLimit, ConcurrencyGate, SenderLimits
from consumer.pipeline.render import OutboundMessage
from consumer.pipeline.retry import compute_backoff
from consumer.state.ledger import DedupStore, LedgerEntry, ledger_key, recipient_hash
from consumer.twilio.client import SendResult
from consumer.zones import zone_or_default

log = logging.getLogger(__name__)

THROTTLE_CODES = frozenset({20429, 21611, 30001, 63018})
# SendAt must be at least 15 minutes ahead (Twilio): holding shorter than that stays in memory.
MIN_SCHEDULE_S = 15 * 60 + 30


class Sender(Protocol):
    async def send(self, params: tuple[tuple[str, str], ...]) -> SendResult: ...


@dataclass(eq=False, slots=True)
class RecordState:
    """One consumed record on its way to a terminal outcome (mutable; lives on the event loop)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    remaining: int = 0
    generation: int = 0  # the assignment this record was consumed under (stale callbacks are ignored)
    message_id: str = ""  # the event's messageId once decoded, for logs
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)  # (mapping, outcome, reason)

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


class Dispatcher:
    """Runs each outbound message to its outcome; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        sender: Sender,
        metrics: Metrics,
        dedup: DedupStore | None,
        dead_letters: DeadLetterWriter,
        limits: SenderLimits,
        adaptive: AdaptiveLimit,
        max_retries: int,
        retry_base_s: float,
        retry_cap_s: float,
        on_record_done: Callable[[RecordState], None],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.sender = sender
        self.metrics = metrics
        self.dedup = dedup
        self.dead_letters = dead_letters
        self.limits = limits
        self.adaptive = adaptive
        self.gate = ConcurrencyGate(adaptive.limit)
        self.max_retries = max_retries
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.on_record_done = on_record_done
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.caps = FrequencyCaps()
        self.suppressed: set[str] = set()  # recipients who answered STOP or cannot receive (this run)
        # Cleared by a configuration error, set again when a credential check passes.
        self._sending_allowed = asyncio.Event()
        self._sending_allowed.set()
        self._lanes: dict[tuple[str, int, str], asyncio.Future[None]] = {}
        self._tasks: dict[tuple[str, int], set[asyncio.Task[None]]] = {}
        self._sending: set[asyncio.Task[Any]] = set()  # tasks whose request may be on the wire now
        # Labelled children looked up once: labels() validates and locks on every call, and these
        # run once or twice per message (the label sets are small and fixed, so the dict is too).
        self._outcome_counters: dict[tuple[str, str, str], Any] = {}
        self._accepted_requests = metrics.twilio_requests.labels("2xx", "")
        metrics.concurrency_limit.set(adaptive.limit)

    # -- outcomes ---------------------------------------------------------------------------------

    def finish(self, record: RecordState, mapping_id: str, outcome: str, reason: str) -> None:
        """Count one (record, mapping) outcome; when it was the record's last, the record is done."""
        counter = self._outcome_counters.get((mapping_id, outcome, reason))
        if counter is None:
            counter = self.metrics.outcomes.labels(mapping_id or "none", outcome, reason)
            self._outcome_counters[(mapping_id, outcome, reason)] = counter
        counter.inc()
        record.outcomes.append((mapping_id, outcome, reason))
        record.remaining -= 1
        if record.remaining == 0:
            self.on_record_done(record)

    def dead_letter(
        self,
        record: RecordState,
        error: ConsumerError,
        reason: str,
        mapping_id: str | None,
        attempts: int | None = None,
    ) -> None:
        """Write the record to the dead-letter topic; its outcome counts once Kafka acknowledged it."""
        self.metrics.dead_letters.labels(error.stage, reason).inc()
        log.warning(
            "dead-lettering record: %s", error.message,
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset,
                   "mapping": mapping_id, "message_id": record.message_id, "stage": error.stage,
                   "reason": reason, "twilio_code": getattr(error, "code", None)},
        )  # fmt: skip

        loop = asyncio.get_running_loop()

        def delivered(err: Exception | None) -> None:
            if err is None:
                self.finish(record, mapping_id or "", "dead_lettered", reason)
                return
            # Never drop it: the offset stays uncommitted while we try again. Reports may be served
            # off the loop (the final producer flush runs on the poll thread), so go through the loop.
            log.error("dead-letter write failed, retrying in 1 s: %s", err)
            retry = functools.partial(self.dead_letter, record, error, reason, mapping_id, attempts)
            loop.call_soon_threadsafe(loop.call_later, 1.0, retry)

        self.dead_letters.write(
            topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
            value=record.value, headers=record.headers, error=error, reason=reason, mapping_id=mapping_id,
            now=datetime.now(UTC), on_delivery=delivered, attempts=attempts,
        )  # fmt: skip

    # -- lanes and tasks --------------------------------------------------------------------------

    def submit(self, record: RecordState, message: OutboundMessage) -> None:
        """Start sending `message` after earlier messages to the same recipient from this partition."""
        lane = (record.topic, record.partition, message.recipient)
        previous = self._lanes.get(lane)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lanes[lane] = mine
        task = asyncio.create_task(self._run(record, message, previous, mine, lane))
        tasks = self._tasks.setdefault(record.tp, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run(
        self,
        record: RecordState,
        message: OutboundMessage,
        previous: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
        lane: tuple[str, int, str],
    ) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            await self._deliver(record, message)
        finally:
            mine.set_result(None)
            if self._lanes.get(lane) is mine:
                del self._lanes[lane]

    def in_flight_tasks(self, partitions: set[tuple[str, int]] | None = None) -> list[asyncio.Task[None]]:
        return [t for tp, ts in self._tasks.items() if partitions is None or tp in partitions for t in ts]

    async def drain(self, partitions: set[tuple[str, int]] | None, timeout_s: float) -> bool:
        """Stop these partitions' sends (all when None): requests already written get up to `timeout_s`
        to finish; the rest are abandoned unsent, their records left unfinished for the next owner.
        True when everything in flight finished in time."""
        tasks = self.in_flight_tasks(partitions)
        waiting = [t for t in tasks if t not in self._sending]
        for task in waiting:
            task.cancel()
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        return not pending

    def cancel(self, partitions: set[tuple[str, int]] | None) -> int:
        tasks = self.in_flight_tasks(partitions)
        for task in tasks:
            task.cancel()
        return len(tasks)

    # -- one message ------------------------------------------------------------------------------

    async def _deliver(self, record: RecordState, message: OutboundMessage) -> None:
        claimed: list[str] = []
        try:
            await self._gates_and_send(record, message, claimed)
        except asyncio.CancelledError:
            # Abandoned by a drain before its request was written: it was not sent, so a later
            # owner (or this replica after a restart) must be free to send it.
            for key in claimed:
                self._release(key)
            raise

    async def _gates_and_send(
        self, record: RecordState, message: OutboundMessage, claimed: list[str]
    ) -> None:
        mid = message.mapping_id
        now = self.clock()
        if message.recipient in self.suppressed:
            self.finish(record, mid, "skipped", "suppressed")
            return
        key = ""
        if message.dedup_key and self.dedup is not None:
            key = ledger_key(mid, message.dedup_key, message.recipient)
            if not self.dedup.ledger.claim(key, record.partition, now):
                self.finish(record, mid, "skipped", "duplicate")
                return
            claimed.append(key)
        params = message.params
        qh = message.quiet_hours
        if qh is not None:
            until = quiet_until(
                datetime.fromtimestamp(now, UTC),
                zone_or_default(message.timezone, qh.default_timezone),
                qh.start,
                qh.end,
            )
            if until is not None:
                if qh.action == "drop":
                    self._release(key)
                    self.finish(record, mid, "skipped", "quiet_hours")
                    return
                wait_s = until.timestamp() - now
                if (
                    message.sender_kind == "messaging_service"
                    and wait_s >= MIN_SCHEDULE_S
                    and not _has(params, "SendAt")
                ):
                    # Let Twilio hold it: the record finishes now instead of pinning its partition's commit.
                    params = (
                        *params,
                        ("SendAt", until.strftime("%Y-%m-%dT%H:%M:%SZ")),
                        ("ScheduleType", "fixed"),
                    )
                else:
                    await self.sleep(wait_s)
        cap = message.frequency_cap
        cap_key = ""
        if cap is not None:
            cap_key = cap_counter_key(cap.scope or mid, recipient_hash(message.recipient))
            if not self.caps.allows(cap_key, cap.limit, cap.window_s, self.clock()):
                self._release(key)
                self.finish(record, mid, "skipped", "frequency_cap")
                return
        wait = self.limits.reserve(message.sender, message.sender_kind, message.segments)
        if wait > 0:
            self.metrics.rate_limit_wait.labels(message.sender_kind).inc(wait)
            await self.sleep(wait)
        await self._send_with_retries(record, message, params, key, cap_key)

    async def _send_with_retries(
        self,
        record: RecordState,
        message: OutboundMessage,
        params: tuple[tuple[str, str], ...],
        key: str,
        cap_key: str,
    ) -> None:
        mid = message.mapping_id
        attempt = 0
        while True:
            await self._sending_allowed.wait()
            try:
                result = await self._attempt(params)
            except TwilioError as error:
                decision = self._on_error(error, message)
                if decision == "retry" and attempt < self.max_retries:
                    delay = compute_backoff(
                        attempt, base_s=self.retry_base_s, cap_s=self.retry_cap_s, rand=self.rand(),
                        retry_after_s=error.retry_after_s,
                    )  # fmt: skip
                    self.metrics.retries.labels(_reason(error)).inc()
                    attempt += 1
                    await self.sleep(delay)
                    continue
                if decision == "halt":
                    continue  # wait for the credential check, then try the same message again
                self._release(key)
                reason = "retries_exhausted" if decision == "retry" else _reason(error)
                self.dead_letter(record, error, reason, mid, attempts=attempt + 1)
                return
            self.adaptive.on_success()
            self._sync_limit()
            now = self.clock()
            if cap_key:
                self.caps.add(cap_key, now)
            # Twilio's status (queued, accepted, scheduled) becomes the reason: a small, fixed set.
            status = result.status or "accepted"
            if key and self.dedup is not None:
                scope = (cap.scope or mid) if (cap := message.frequency_cap) is not None else ""
                entry = LedgerEntry(
                    key, now, now + message.dedup_window_s, recipient_hash(message.recipient), mid, scope
                )
                accepted_at = time.perf_counter()
                self.dedup.record(
                    entry,
                    record.partition,
                    functools.partial(self._ledger_written, record, mid, status, accepted_at),
                )
            else:
                self.finish(record, mid, "sent", status)
            if log.isEnabledFor(logging.DEBUG):
                where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
                extra = {**where, "mapping": mid, "message_id": record.message_id, "twilio_sid": result.sid}
                log.debug("sent (%s)", status, extra=extra)
            return

    def _ledger_written(
        self, record: RecordState, mapping_id: str, status: str, accepted_at: float, err: Exception | None
    ) -> None:
        # Invariant 5's residual window, measured: a crash between Twilio's 201 and this point is the
        # only way a message can be sent twice.
        self.metrics.ledger_write_seconds.observe(time.perf_counter() - accepted_at)
        if err is not None:
            # The message went out; only our memory of it is at risk. Count it sent, say so loudly.
            where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
            log.error("de-duplication ledger write failed; a restart could resend: %s", err, extra=where)
        self.finish(record, mapping_id, "sent", status)

    async def _attempt(self, params: tuple[tuple[str, str], ...]) -> SendResult:
        async with self.gate:
            task = asyncio.current_task()
            assert task is not None
            self._sending.add(task)
            self.metrics.in_flight.inc()
            started = time.perf_counter()
            try:
                result = await self.sender.send(params)
            except TwilioError as error:
                self.metrics.twilio_requests.labels(_status_class(error.status), str(error.code or "")).inc()
                raise
            except Exception as exc:
                # A bug or an unreadable 201 must not kill the task (its record would never finish and
                # pin the partition); the request may have been accepted, so it is never repeated.
                self.metrics.twilio_requests.labels(_status_class(None), "").inc()
                raise TwilioError(
                    f"send message: unexpected {type(exc).__name__}: {exc}; Twilio may have accepted it: "
                    "check the Twilio message logs before replaying",
                    error_class=ErrorClass.MAY_HAVE_SENT,
                ) from exc
            finally:
                self._sending.discard(task)
                self.metrics.in_flight.dec()
                self.metrics.send_latency.observe(time.perf_counter() - started)
        self._accepted_requests.inc()
        return result

    def _on_error(self, error: TwilioError, message: OutboundMessage) -> str:
        """Decide: retry, halt or dead (dead-letter). Side effects: throttle, suppress, halt."""
        cls = error.error_class
        if (error.status == 429 or error.code in THROTTLE_CODES) and self.adaptive.on_throttle():
            self._sync_limit()
        if cls is ErrorClass.RETRYABLE:
            return "retry"
        if cls is ErrorClass.MAY_HAVE_SENT:
            self.metrics.may_have_sent.inc()
            return "retry" if error.status is not None else "dead"
        if cls is ErrorClass.RECIPIENT:
            self.suppressed.add(message.recipient)
            return "dead"
        if cls is ErrorClass.CONFIGURATION:
            self._halt(error)
            return "halt"
        return "dead"

    def _halt(self, error: TwilioError) -> None:
        if self._sending_allowed.is_set():
            log.error(
                "Twilio rejected our configuration; sending halts until the credential check passes: %s",
                error.message,
                extra={"twilio_code": error.code},
            )
            self._sending_allowed.clear()

    def resume(self) -> None:
        if not self._sending_allowed.is_set():
            log.warning("Twilio credential check passed; resuming sending")
            self._sending_allowed.set()

    @property
    def halted(self) -> bool:
        return not self._sending_allowed.is_set()

    def _sync_limit(self) -> None:
        limit = self.adaptive.limit
        if self.gate.limit != limit:
            self.gate.limit = limit
            self.metrics.concurrency_limit.set(limit)

    def _release(self, key: str) -> None:
        if key and self.dedup is not None:
            self.dedup.ledger.release(key)


def cap_counter_key(scope: str, recipient_digest: str) -> str:
    """The frequency-cap counter for a recipient under a scope (restored from the ledger the same way)."""
    return f"{scope}:{recipient_digest}"


def _has(params: tuple[tuple[str, str], ...], name: str) -> bool:
    return any(k == name for k, _ in params)


def _status_class(status: int | None) -> str:
    return "transport" if status is None else f"{status // 100}xx"


def _reason(error: TwilioError) -> str:
    if error.code:
        return f"twilio_{error.code}"
    if error.status is None:
        return "ambiguous" if error.error_class is ErrorClass.MAY_HAVE_SENT else "connection"
    return f"http_{error.status}"
