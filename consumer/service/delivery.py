"""One message to its outcome: the stateful gates, pacing, the request, the retry policy, the ledger.

    suppressed? ─► dedup claim ─► quiet hours ─► frequency cap ─► sender rate ─► concurrency slot
        ─► POST ─► 201: ledger write acknowledged ─► sent
                └► error: consumer.pipeline.retry.decide ─► retry after a delay | dead-letter | halt

Retries wait without holding a concurrency slot, each message on its own, so other recipients go
on. A configuration error (bad credentials, sender not allowed) halts every send until a credential
check passes (`Halting`), so a broken key does not burn the backlog into the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer.errors import ErrorClass, KafkaError, TwilioError
from consumer.metrics import Metrics
from consumer.pipeline import retry
from consumer.pipeline.gates import capped, frequency_key, quiet_hours
from consumer.pipeline.message import OutboundMessage, Params
from consumer.pipeline.pacing import AdaptiveLimit, SenderLimits
from consumer.pipeline.schedule import schedule_params
from consumer.service.concurrency import ConcurrencyGate
from consumer.service.outcomes import Outcomes
from consumer.service.records import RecordState
from consumer.state.ledger import LedgerEntry, ledger_key, recipient_hash
from consumer.state.sent import SentState
from consumer.twilio.classify import is_throttle
from consumer.twilio.client import SendResult

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def send(self, params: Params) -> SendResult: ...


class Halting:
    """Whether sending is allowed: cleared by a configuration error, set again by a passing check."""

    def __init__(self) -> None:
        self._allowed = asyncio.Event()
        self._allowed.set()

    @property
    def halted(self) -> bool:
        return not self._allowed.is_set()

    async def wait(self) -> None:
        await self._allowed.wait()

    def halt(self, error: TwilioError) -> None:
        if not self.halted:
            log.error(
                "Twilio rejected our configuration; sending halts until the credential check passes: %s",
                error.message,
                extra={"twilio_code": error.code},
            )
            self._allowed.clear()

    def resume(self) -> None:
        if self.halted:
            log.warning("Twilio credential check passed; resuming sending")
            self._allowed.set()


class Delivery:
    """Deliver one outbound message of a record; see the module docstring for the steps."""

    def __init__(
        self,
        *,
        sender: Sender,
        metrics: Metrics,
        state: SentState | None,
        outcomes: Outcomes,
        limits: SenderLimits,
        adaptive: AdaptiveLimit,
        policy: retry.RetryPolicy,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.sender = sender
        self.metrics = metrics
        self.state = state
        self.outcomes = outcomes
        self.limits = limits
        self.adaptive = adaptive
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.gate = ConcurrencyGate(adaptive.limit)
        self.halting = Halting()
        self.suppressed: set[str] = set()  # recipients who answered STOP or cannot receive (this run)
        self.on_wire: set[asyncio.Task[Any]] = set()  # tasks whose request may be on the wire now
        self._accepted = metrics.twilio_requests.labels("2xx", "")
        metrics.concurrency_limit.set(adaptive.limit)

    async def deliver(self, record: RecordState, message: OutboundMessage) -> None:
        """Run `message` to its outcome. Cancelled before its request was written, it leaves no trace."""
        key: str | None = ""
        try:
            key = self._claim(record, message)
            if key is not None:
                await self._gated(record, message, key)
        except asyncio.CancelledError:
            # Abandoned by a drain before its request was written: it was not sent, so a later
            # owner (or this replica after a restart) must be free to send it.
            self._release(key or "")
            raise

    def _claim(self, record: RecordState, message: OutboundMessage) -> str | None:
        """The ledger key claimed for this send ("" without de-duplication); None when it is skipped."""
        mid = message.mapping_id
        if message.recipient in self.suppressed:
            self.outcomes.finish(record, mid, "skipped", "suppressed")
            return None
        if not message.dedup_key or self.state is None:
            return ""
        key = ledger_key(mid, message.dedup_key, message.recipient)
        if not self.state.ledger.claim(key, record.partition, self.clock()):
            self.outcomes.finish(record, mid, "skipped", "duplicate")
            return None
        return key

    async def _gated(self, record: RecordState, message: OutboundMessage, key: str) -> None:
        mid, params = message.mapping_id, message.params
        quiet = quiet_hours(message, datetime.fromtimestamp(self.clock(), UTC))
        if quiet is not None and quiet.drop:
            self._skip(record, mid, key, "quiet_hours")
            return
        if quiet is not None and quiet.schedule:
            # Let Twilio hold it: the record finishes now instead of pinning its partition's commit.
            params = (*params, *schedule_params(quiet.until))
        elif quiet is not None:
            await self.sleep(quiet.until.timestamp() - self.clock())
        if self.state is not None and capped(message, self.state.caps, self.clock()):
            self._skip(record, mid, key, "frequency_cap")
            return
        wait = self.limits.reserve(message.sender, message.sender_kind, message.segments)
        if wait > 0:
            self.metrics.rate_limit_wait.labels(message.sender_kind).inc(wait)
            await self.sleep(wait)
        await self._send(record, message, params, key)

    def _skip(self, record: RecordState, mapping_id: str, key: str, reason: str) -> None:
        self._release(key)
        self.outcomes.finish(record, mapping_id, "skipped", reason)

    async def _send(self, record: RecordState, message: OutboundMessage, params: Params, key: str) -> None:
        attempt = 0
        while True:
            await self.halting.wait()
            try:
                result = await self._attempt(params)
            except TwilioError as error:
                decision = self._decide(error, message, attempt)
                if isinstance(decision, retry.Retry):
                    self.metrics.retries.labels(decision.reason).inc()
                    attempt += 1
                    await self.sleep(decision.delay_s)
                elif isinstance(decision, retry.DeadLetter):
                    self._release(key)
                    self.outcomes.dead_letter(record, error, decision.reason, message.mapping_id, attempt + 1)
                    return
                elif isinstance(decision, retry.Skipped):
                    self._skip(record, message.mapping_id, key, decision.reason)
                    return
                # Halt: wait for the credential check, then try the same request again.
                continue
            self._sent(record, message, result, key)
            return

    def _decide(self, error: TwilioError, message: OutboundMessage, attempt: int) -> retry.Decision:
        """The retry policy's decision, and what the error tells the rest of the send path."""
        if is_throttle(error.status, error.code) and self.adaptive.on_throttle():
            self._sync_limit()
        if error.error_class is ErrorClass.MAY_HAVE_SENT:
            self.metrics.may_have_sent.inc()
        if error.error_class is ErrorClass.RECIPIENT:
            self.suppressed.add(message.recipient)
        decision = retry.decide(error, attempt, self.policy, self.rand())
        if isinstance(decision, retry.Halt):
            self.halting.halt(error)
        return decision

    def _sent(self, record: RecordState, message: OutboundMessage, result: SendResult, key: str) -> None:
        self.adaptive.on_success()
        self._sync_limit()
        now, mid = self.clock(), message.mapping_id
        cap = frequency_key(message)
        if cap and self.state is not None:
            self.state.caps.add(cap, now)
        # Twilio's status (queued, accepted, scheduled) becomes the reason: a small, fixed set.
        status = result.status or "accepted"
        if key and self.state is not None:
            scope = (message.frequency_cap.scope or mid) if message.frequency_cap is not None else ""
            entry = LedgerEntry(
                key, now, now + message.dedup_window_s, recipient_hash(message.recipient), mid, scope
            )
            written = functools.partial(self._ledger_written, record, mid, status, time.perf_counter())
            self.state.record(entry, record.partition, written)
        else:
            self.outcomes.finish(record, mid, "sent", status)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sent (%s)", status, extra={**record.where, "mapping": mid, "twilio_sid": result.sid})

    def _ledger_written(
        self, record: RecordState, mapping_id: str, status: str, accepted_at: float, err: KafkaError | None
    ) -> None:
        # Invariant 5's residual window, measured: a crash between Twilio's 201 and this point is the
        # only way a message can be sent twice.
        self.metrics.ledger_write_seconds.observe(time.perf_counter() - accepted_at)
        if err is not None:
            # The message went out; only our memory of it is at risk. Count it sent, say so loudly.
            log.error(
                "de-duplication ledger write failed; a restart could resend: %s", err, extra=record.where
            )
        self.outcomes.finish(record, mapping_id, "sent", status)

    async def _attempt(self, params: Params) -> SendResult:
        async with self.gate:
            task = asyncio.current_task()
            assert task is not None
            self.on_wire.add(task)
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
                self.on_wire.discard(task)
                self.metrics.in_flight.dec()
                self.metrics.send_latency.observe(time.perf_counter() - started)
        self._accepted.inc()
        return result

    def _sync_limit(self) -> None:
        limit = self.adaptive.limit
        if self.gate.limit != limit:
            self.gate.limit = limit
            self.metrics.concurrency_limit.set(limit)

    def _release(self, key: str) -> None:
        if key and self.state is not None:
            self.state.ledger.release(key)


def _status_class(status: int | None) -> str:
    return "transport" if status is None else f"{status // 100}xx"
