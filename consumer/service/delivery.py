"""One message to its outcome: the ledger claim, the stateful gates, pacing, then the exchange.

    suppressed? ─► ledger claim (sent? in doubt?) ─► quiet hours ─► frequency cap ─► sender rate
        ─► consumer.service.exchange: intent ─► POST ─► sent (or reconciled, retried, dead-lettered)

Every message has a ledger key: its de-duplication key when the mapping has one, else the record's
own coordinates, so a crash never sends the same record's message twice either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from consumer.metrics import Metrics
from consumer.pipeline.gates import capped, quiet_hours
from consumer.pipeline.message import OutboundMessage
from consumer.pipeline.pacing import SenderLimits
from consumer.pipeline.schedule import schedule_params
from consumer.service.exchange import Exchange
from consumer.service.outcomes import Outcomes
from consumer.service.records import RecordState
from consumer.state.ledger import ledger_key
from consumer.state.sent import SentState


class Delivery:
    """Deliver one outbound message of a record; see the module docstring for the steps."""

    def __init__(
        self,
        *,
        exchange: Exchange,
        metrics: Metrics,
        state: SentState,
        outcomes: Outcomes,
        limits: SenderLimits,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.exchange = exchange
        self.metrics = metrics
        self.state = state
        self.outcomes = outcomes
        self.limits = limits
        self.sleep = sleep
        self.clock = exchange.clock
        # The send path's shared gates, named here for the service (readiness, pausing) and the dispatcher.
        self.halting = exchange.halting
        self.breaker = exchange.breaker
        self.on_wire = exchange.on_wire

    async def deliver(self, record: RecordState, message: OutboundMessage) -> None:
        """Run `message` to its outcome. Cancelled before its request was written, it leaves no trace."""
        key = ledger_key(message.mapping_id, message.dedup_key or _record_key(record), message.recipient)
        claimed = False
        try:
            claimed = await self._claim(record, message, key)
            if claimed:
                await self._gated(record, message, key)
        except asyncio.CancelledError:
            # Abandoned by a drain: not written means not sent, so a later owner may send it; an intent
            # already written keeps the key in doubt for whoever processes the record next.
            if claimed:
                self.state.ledger.release(key)
            raise

    async def _claim(self, record: RecordState, message: OutboundMessage, key: str) -> bool:
        """True when this message is to be sent now; else its outcome is recorded."""
        mid = message.mapping_id
        if self.exchange.suppressed.blocks(message):
            self.outcomes.finish(record, mid, "skipped", "suppressed")
            return False
        claim = self.state.ledger.claim(key, record.partition, self.clock())
        if not claim.reserved:
            self.outcomes.finish(record, mid, "skipped", "duplicate")
            return False
        if claim.kind == "in_doubt" and await self.exchange.settle_in_doubt(
            record, message, key, claim.intent_at
        ):
            self.state.ledger.release(key)
            return False
        return True

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
        if capped(message, self.state.caps, self.clock()):
            self._skip(record, mid, key, "frequency_cap")
            return
        ticket = self.limits.book(message.sender, message.sender_kind, message.segments)
        wait = ticket.wait
        while wait > 0:  # again when a rebalance lowered this replica's share meanwhile
            self.metrics.rate_limit_wait.labels(message.sender_kind).inc(wait)
            await self.sleep(wait)
            wait = self.limits.still_to_wait(ticket)
        await self.exchange.send(record, message, params, key)

    def _skip(self, record: RecordState, mapping_id: str, key: str, reason: str) -> None:
        self.state.ledger.release(key)
        self.outcomes.finish(record, mapping_id, "skipped", reason)


def _record_key(record: RecordState) -> str:
    """The ledger key of a message without de-duplication: the record it came from."""
    return f"@{record.topic}/{record.partition}/{record.offset}"
