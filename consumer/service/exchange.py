"""The exchange with Twilio for one message, exactly once.

Twilio's Messages API has no idempotency key, so the ledger does what one would:

    intent (written, acknowledged by Kafka) ─► POST ─► 201 ─► sent (written, acknowledged) ─► outcome
                                                 └► in doubt (5xx, no answer) ─► ask Twilio's list
                                                        found ─► sent with its SID   not found ─► retry

An intent without an outcome (a crash, a lost answer) is in doubt: the record comes back (its offset
was never committed), its claim says so, and the list is asked before anything is sent again. A
message the list cannot settle after the retry budget is dead-lettered `ambiguous`, its intent kept,
so a later replay asks again. A definite failure writes `released`, freeing the key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer.errors import ErrorClass, KafkaError, TwilioError
from consumer.mappings.templating import parse_time
from consumer.metrics import Metrics
from consumer.pipeline import retry
from consumer.pipeline.message import OutboundMessage, Params
from consumer.pipeline.pacing import AdaptiveLimit
from consumer.pipeline.reconcile import find_sent
from consumer.service.breaker import Breaker, Halting, is_systemic
from consumer.service.concurrency import ConcurrencyGate
from consumer.service.outcomes import Outcomes
from consumer.service.records import RecordState
from consumer.state.ledger import INTENT, RELEASED, SENT, LedgerEntry, recipient_hash, request_digests
from consumer.state.sent import SentState
from consumer.state.suppression import RunSuppressions, Suppressions
from consumer.twilio.classify import is_throttle
from consumer.twilio.client import SendResult

log = logging.getLogger(__name__)

#: The window of the ledger key of a message without de-duplication: long enough for any redelivery.
OFFSET_KEY_WINDOW_S = 4 * 3600.0
NOT_FOUND: Mapping[str, Any] = {}


@dataclass(frozen=True)
class Found:
    """Twilio's list has the message an unanswered attempt sent."""

    sid: str
    status: str


class Twilio(Protocol):
    async def send(self, params: Params) -> SendResult: ...
    async def list_messages(self, to: str, sender: str | None = None) -> list[dict[str, Any]]: ...


class Exchange:
    """Send one claimed message exactly once; see the module docstring."""

    def __init__(
        self,
        *,
        twilio: Twilio,
        metrics: Metrics,
        state: SentState,
        outcomes: Outcomes,
        adaptive: AdaptiveLimit,
        policy: retry.RetryPolicy,
        reconcile_delay_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        suppressed: Suppressions | None = None,
    ) -> None:
        self.twilio = twilio
        self.metrics = metrics
        self.state = state
        self.outcomes = outcomes
        self.adaptive = adaptive
        self.policy = policy
        self.reconcile_delay_s = reconcile_delay_s
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.gate = ConcurrencyGate(adaptive.limit)
        self.halting = Halting()
        self.breaker = Breaker(on_change=lambda up: metrics.twilio_available.set(1 if up else 0))
        # Recipients who answered STOP or cannot receive: the durable list (consumer.state.suppression).
        self.suppressed = suppressed if suppressed is not None else RunSuppressions()
        self.on_wire: set[asyncio.Task[Any]] = set()  # tasks whose request may be on the wire now
        self._accepted = metrics.twilio_requests.labels("2xx", "")
        self.delays = SendDelays(metrics)
        metrics.concurrency_limit.set(adaptive.limit)

    # -- the protocol -------------------------------------------------------------------------------

    async def settle_in_doubt(
        self, record: RecordState, message: OutboundMessage, key: str, since: float
    ) -> bool:
        """For a claim in doubt: True (and the outcome recorded) when Twilio already has the message."""
        listed = await self._reconcile(message, message.params, since)
        if listed is None:  # Twilio could not tell: do not guess
            self.outcomes.dead_letter(record, _unresolved(), "ambiguous", message.mapping_id)
            return True
        if not listed:
            return False
        await self._sent(record, message, key, str(listed["sid"]), str(listed.get("status") or "sent"))
        return True

    async def send(self, record: RecordState, message: OutboundMessage, params: Params, key: str) -> None:
        """Write the intent, then send until sent, skipped or dead-lettered."""
        intent_at = self.clock()
        intent = _entry(message, key, INTENT, intent_at, params=params)
        await acknowledged_write(self.state, record, intent, self.metrics.intent_write_seconds, self.sleep)
        attempt = 0
        while True:
            await self.halting.wait()
            await self.breaker.wait()
            try:
                result = await self._attempt(params)
            except TwilioError as error:
                outcome = await self._after_failure(error, message, params, attempt, intent_at)
                if isinstance(outcome, Found):
                    await self._sent(record, message, key, outcome.sid, outcome.status)
                    return
                decision, counted = outcome
                if not await self._follow(record, message, key, error, decision=decision, attempt=attempt):
                    return
                attempt += counted
                continue
            self.breaker.success()
            self.delays.observe(record, message.mapping_id, self.clock())
            await self._sent(record, message, key, result.sid, result.status or "accepted")
            return

    async def _after_failure(
        self, error: TwilioError, message: OutboundMessage, params: Params, attempt: int, intent_at: float
    ) -> Found | tuple[retry.Decision, int]:
        """What a failed attempt means: the message found at Twilio after all, or the decision and
        whether the attempt counts against the message's own budget (an outage's failures do not)."""
        systemic = is_systemic(error)
        if systemic:
            self.breaker.failure(error)
        else:
            self.breaker.success()  # Twilio answered: it is up
        if is_throttle(error.status, error.code) and self.adaptive.on_throttle():
            self._sync_limit()
        if error.error_class is ErrorClass.RECIPIENT:
            self.suppressed.add(message, error.code)
        if error.error_class is ErrorClass.MAY_HAVE_SENT:
            self.metrics.may_have_sent.inc()
            listed = await self._reconcile(message, params, intent_at)
            if listed is None:
                return retry.DeadLetter("ambiguous"), 1
            if listed:
                return Found(str(listed["sid"]), str(listed.get("status") or "sent"))
            error = retry.not_sent(error)  # Twilio does not have it: as if it had refused it
        if systemic and self.breaker.open:
            return retry.Retry(0.0, retry.reason_of(error)), 0  # the breaker waits the outage out
        decision = retry.decide(error, attempt, self.policy, self.rand())
        if isinstance(decision, retry.Halt):
            self.halting.halt(error)
        return decision, 1

    async def _follow(
        self, record: RecordState, message: OutboundMessage, key: str, error: TwilioError, *,
        decision: retry.Decision, attempt: int,
    ) -> bool:  # fmt: skip
        """Carry out a decision; True when the message is to be sent again."""
        mid = message.mapping_id
        if isinstance(decision, retry.Retry):
            self.metrics.retries.labels(decision.reason).inc()
            await self.sleep(decision.delay_s)
            return True
        if isinstance(decision, retry.Halt):
            return True  # wait for the credential check, then try the same request again
        if isinstance(decision, retry.DeadLetter) and decision.reason == "ambiguous":
            # Twilio could not say whether it has the message: keep the intent for whoever asks next.
            self.outcomes.dead_letter(record, error, decision.reason, mid, attempt + 1)
            return False
        self.release(record, message, key)
        if isinstance(decision, retry.Skipped):
            self.outcomes.finish(record, mid, "skipped", decision.reason)
        elif isinstance(decision, retry.DeadLetter):
            self.outcomes.dead_letter(record, error, decision.reason, mid, attempt + 1)
        return False

    # -- Twilio ------------------------------------------------------------------------------------

    async def _attempt(self, params: Params) -> SendResult:
        async with self.gate:
            task = asyncio.current_task()
            assert task is not None
            self.on_wire.add(task)
            self.metrics.in_flight.inc()
            started = time.perf_counter()
            try:
                result = await self.twilio.send(params)
            except TwilioError as error:
                self.metrics.twilio_requests.labels(_status_class(error.status), str(error.code or "")).inc()
                raise
            except Exception as exc:
                # A bug or an unreadable 201 must not kill the task (its record would never finish and
                # pin the partition); the request may have been accepted: reconciliation will tell.
                self.metrics.twilio_requests.labels(_status_class(None), "").inc()
                raise TwilioError(
                    f"send message: unexpected {type(exc).__name__}: {exc}; Twilio may have accepted it",
                    error_class=ErrorClass.MAY_HAVE_SENT,
                ) from exc
            finally:
                self.on_wire.discard(task)
                self.metrics.in_flight.dec()
                self.metrics.send_latency.observe(time.perf_counter() - started)
        self._accepted.inc()
        self.adaptive.on_success()
        self._sync_limit()
        return result

    async def _reconcile(
        self, message: OutboundMessage, params: Params, since: float
    ) -> Mapping[str, Any] | None:
        """The listed message that is this request (sent after `since`), NOT_FOUND (empty) when
        Twilio has none, or None when Twilio could not be asked within the retry budget."""
        # A message just created can take a moment to be listed: asking at once could miss it.
        wait = since + self.reconcile_delay_s - self.clock()
        if wait > 0:
            await self.sleep(wait)
        sender = None if message.sender_kind == "messaging_service" else dict(params).get("From")
        failures = 0
        while True:
            await self.halting.wait()
            await self.breaker.wait()
            try:
                async with self.gate:
                    listing = await self.twilio.list_messages(message.to, sender)
            except TwilioError as error:
                systemic = is_systemic(error)
                if systemic:
                    self.breaker.failure(error)
                else:
                    self.breaker.success()
                failures += 0 if systemic and self.breaker.open else 1
                if failures > self.policy.max_retries:
                    self.metrics.reconciled.labels("unresolved").inc()
                    log.warning(
                        "in doubt: Twilio's list could not be read (%s); dead-lettering as ambiguous",
                        error.message,
                        extra={"mapping": message.mapping_id},
                    )
                    return None
                p = self.policy
                delay = retry.compute_backoff(
                    failures,
                    base_s=p.base_s,
                    cap_s=p.cap_s,
                    rand=self.rand(),
                    retry_after_s=error.retry_after_s,
                )
                await self.sleep(delay)
                continue
            self.breaker.success()
            found = find_sent(listing, params, datetime.fromtimestamp(since, UTC), self.state.ledger.sids)
            self.metrics.reconciled.labels("found" if found else "not_found").inc()
            # Rare and worth an operator's eye: which way each doubt was settled.
            log.info(
                "in doubt: %s",
                "Twilio has it, not sent again" if found else "Twilio has none, sending",
                extra={"mapping": message.mapping_id, "twilio_sid": found["sid"] if found else None},
            )
            return found or NOT_FOUND

    # -- the ledger --------------------------------------------------------------------------------

    async def _sent(
        self, record: RecordState, message: OutboundMessage, key: str, sid: str, status: str
    ) -> None:
        entry = _entry(message, key, SENT, self.clock(), sid=sid)
        # Writing the sent entry also counts it against its frequency cap (consumer.state.sent). Off
        # the send's path, it waits (milliseconds) to share the next intent's produce request; the
        # record finishes once it is acknowledged. Its key is already `sent` in the store meanwhile.
        await acknowledged_write(
            self.state, record, entry, self.metrics.ledger_write_seconds, self.sleep, defer=True
        )
        # Twilio's status (queued, accepted, scheduled, ...) becomes the reason: a small, fixed set.
        self.outcomes.finish(record, message.mapping_id, "sent", status)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "sent (%s)", status, extra={**record.where, "mapping": message.mapping_id, "twilio_sid": sid}
            )

    def release(self, record: RecordState, message: OutboundMessage, key: str) -> None:
        """The message surely was not sent: free its key (best effort: a lost release only means the
        record's next processing asks Twilio first)."""
        self.state.write(_entry(message, key, RELEASED, self.clock()), record.partition, lambda _err: None)

    def _sync_limit(self) -> None:
        limit = self.adaptive.limit
        if self.gate.limit != limit:
            self.gate.limit = limit
            self.metrics.concurrency_limit.set(limit)


class SendDelays:
    """How long after its event Twilio accepted each message, by Kafka's clock and the event's."""

    def __init__(self, metrics: Metrics) -> None:
        self.histogram = metrics.send_delay
        self.children: dict[str, tuple[Any, Any]] = {}  # mapping id -> its (kafka, event) histograms

    def observe(self, record: RecordState, mapping_id: str, now: float) -> None:
        delays = self.children.get(mapping_id)
        if delays is None:
            by = self.histogram.labels
            delays = self.children[mapping_id] = (by(mapping_id, "kafka"), by(mapping_id, "event"))
        if record.timestamp_ms:
            delays[0].observe(max(0.0, now - record.timestamp_ms / 1000))
        if record.event_time and (at := parse_time(record.event_time)) is not None:
            delays[1].observe(max(0.0, now - at.timestamp()))


async def acknowledged_write(
    state: SentState, record: RecordState, entry: LedgerEntry, timer: Any,
    sleep: Callable[[float], Awaitable[object]], *, defer: bool = False,
) -> None:  # fmt: skip
    """Write `entry` and wait for Kafka's acknowledgement, trying again (the record waits) while
    Kafka refuses: an unacknowledged intent must not be acted on."""
    loop = asyncio.get_running_loop()
    delay = 0.1
    while True:
        written: asyncio.Future[KafkaError | None] = loop.create_future()
        started = time.perf_counter()
        # The changelog hands its reports to the loop (consumer.kafka.reports.on_loop).
        state.write(entry, record.partition, functools.partial(_resolve, written), defer=defer)
        err = await written
        timer.observe(time.perf_counter() - started)
        if err is None:
            return
        log.warning("ledger write failed, trying again in %.1f s: %s", delay, err.message, extra=record.where)
        await sleep(delay)
        delay = min(delay * 2, 5.0)


def _entry(
    message: OutboundMessage, key: str, state: str, at: float, *, sid: str = "", params: Params = ()
) -> LedgerEntry:
    """The ledger entry of `message` in `state` (intent, sent, released) at `at`."""
    window = message.dedup_window_s if message.dedup_key else OFFSET_KEY_WINDOW_S
    digest, fingerprint = request_digests(params) if params else ("", "")
    scope = (message.frequency_cap.scope or message.mapping_id) if message.frequency_cap else ""
    return LedgerEntry(key, at, at + window, recipient_hash(message.recipient), message.mapping_id, scope,
                       state, sid, digest, fingerprint)  # fmt: skip


def _resolve(future: asyncio.Future[KafkaError | None], err: KafkaError | None) -> None:
    if not future.done():
        future.set_result(err)


def _unresolved() -> TwilioError:
    return TwilioError(
        "send message: an earlier attempt may have been sent, and Twilio's message list could not be read "
        "to tell; check the Twilio message logs before replaying",
        error_class=ErrorClass.MAY_HAVE_SENT,
    )


def _status_class(status: int | None) -> str:
    return "transport" if status is None else f"{status // 100}xx"
