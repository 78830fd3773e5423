"""Send pacing: per-sender rate limits and adaptive concurrency (enforced by `consumer.service.concurrency`).

The decisions are pure given a clock: `TokenBucket.reserve` returns how long to wait instead of
sleeping, so the run loop can schedule the send and keep serving other recipients meanwhile
(invariants 4 and 6), and tests drive time by hand.

Default sender rates (reference/twilio-api.md, "Limits a high-volume sender meets"):

    long_code          1 segment/s   US 10DLC / long code
    toll_free          3 segments/s  Twilio's default for a verified toll-free number
    short_code       100 segments/s
    alphanumeric       1 segment/s   no published figure; paced like a long code to be safe
    whatsapp          10 messages/s  text; WhatsApp counts messages, never segments
    messaging_service  0 (unlimited) the service spreads load over its sender pool and queues it
                                     at Twilio; cap one with a per-sender override
    messenger          0 (unlimited) no published per-sender figure

A rate of 0 means unlimited. Exceeding a rate is not fatal at Twilio (the sender queue holds ~10 h),
but it makes the queue, and so the delay to the recipient, grow until 21611 "queue full".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from consumer.errors import SettingsError

Clock = Callable[[], float]

DEFAULT_RATES: Mapping[str, float] = {
    "long_code": 1.0,
    "toll_free": 3.0,
    "short_code": 100.0,
    "alphanumeric": 1.0,
    "whatsapp": 10.0,
    "messaging_service": 0.0,
    "messenger": 0.0,
}

# Kinds whose throughput Twilio measures in SMS segments; the others count whole messages.
SEGMENT_KINDS = frozenset({"long_code", "toll_free", "short_code", "alphanumeric", "messaging_service"})

UNITS = ("messages", "segments")


class TokenBucket:
    """A token bucket that hands out reservations: `rate` tokens per second, at most `burst` saved.

    A reservation is taken at once and may push the balance below zero; later reservations see the
    debt and wait behind it, so callers are served in the order they asked (fair queueing).

    Reservations are positions on a line of tokens (`reserved` counts every token ever taken, `granted`
    every token ever made available), not instants: when the rate changes (a rebalance changed this
    replica's share), a waiter asks again with `wait_for(position)` and learns its new wait, so the
    debt taken at the old rate is paid at the new one.
    """

    def __init__(self, rate: float, burst: float, *, clock: Clock) -> None:
        _check(rate, burst)
        self.rate = rate
        self.burst = burst
        self.epoch = 0  # bumped by every change of rate: a waiter's wait is stale when it differs
        self._clock = clock
        self._reserved = 0.0
        self._granted = burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        if self.rate > 0:
            earned = max(0.0, now - self._last) * self.rate
            self._granted = min(self._reserved + self.burst, self._granted + earned)
        self._last = now

    def book(self, cost: float = 1.0) -> tuple[float, float]:
        """Take `cost` tokens now; return (the position to wait for, the seconds until it is reached)."""
        if self.rate == 0:
            return 0.0, 0.0
        self._refill()
        # A cost above the burst could never be saved up; it waits for a full bucket, then runs into debt.
        position = self._reserved + min(cost, self.burst)
        self._reserved += cost
        return position, max(0.0, position - self._granted) / self.rate

    def reserve(self, cost: float = 1.0) -> float:
        """Take `cost` tokens now; return the seconds to wait before acting on them (0 when available)."""
        return self.book(cost)[1]

    def wait_for(self, position: float) -> float:
        """Seconds until `position` (from `book`) is reached at the current rate."""
        if self.rate == 0:
            return 0.0
        self._refill()
        return max(0.0, position - self._granted) / self.rate

    def set_rate(self, rate: float, burst: float) -> None:
        """Change the rate from now on; the tokens saved are kept up to the new burst."""
        _check(rate, burst)
        if rate == self.rate and burst == self.burst:
            return
        self._refill()  # what was earned so far was earned at the old rate
        if self.rate == 0:  # unlimited until now: nothing was counted, start with a full bucket
            self._granted = self._reserved + burst
        self._granted = min(self._granted, self._reserved + burst)
        self.rate, self.burst = rate, burst
        self.epoch += 1


def _check(rate: float, burst: float) -> None:
    if rate < 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a finite number >= 0 (0 = unlimited), got {rate}")
    if rate > 0 and burst <= 0:
        raise ValueError(f"burst must be > 0, got {burst}")


@dataclass
class Ticket:
    """A booked send: where it stands in its sender's bucket, and the wait it was told."""

    bucket: TokenBucket
    position: float
    wait: float
    epoch: int


def split(budget: int, share: float) -> int:
    """This replica's part of a budget shared by the consumer group: rounded down, so the parts never
    add up to more than the budget, but at least 1 (a replica with partitions must be able to send)."""
    return max(1, math.floor(budget * share + 1e-9))


class SenderLimits:
    """One token bucket per sender, created on first use, with rates by sender kind or per sender.

    The rates are the consumer group's: a replica paces each sender at `share` of its rate, its part of
    the source partitions (`consumer.service.budgets`), so all replicas together keep to the rate.
    """

    def __init__(
        self,
        defaults: Mapping[str, float] | None = None,
        overrides: Mapping[str, float] | None = None,
        *,
        unit: str = "segments",
        burst_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if unit not in UNITS:
            raise SettingsError(f"rate-limit unit {unit!r} is not known: use 'messages' or 'segments'")
        unknown = sorted(set(defaults or {}) - set(DEFAULT_RATES))
        if unknown:
            raise SettingsError(
                f"rate-limit defaults name unknown sender kinds {unknown}: use {', '.join(DEFAULT_RATES)}"
            )
        rates = {**DEFAULT_RATES, **(defaults or {})}
        bad = sorted(
            k for k, v in {**rates, **(overrides or {})}.items() if not (v >= 0 and math.isfinite(v))
        )
        if bad:
            raise SettingsError(f"rate limits for {bad} must be numbers >= 0 per second (0 = unlimited)")
        if burst_s <= 0:
            raise SettingsError(f"rate-limit burst must be > 0 seconds of sending, got {burst_s}")
        self.unit = unit
        self._rates = rates
        self._overrides = dict(overrides or {})
        self._burst_s = burst_s
        self._clock = clock
        self._buckets: dict[str, tuple[TokenBucket, float]] = {}  # sender -> (bucket, group-wide rate)
        self.share = 1.0

    def set_share(self, share: float) -> None:
        """Pace every sender at `share` (0 < share <= 1) of its rate from now on."""
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.share = share
        for bucket, rate in self._buckets.values():
            bucket.set_rate(*self._paced(rate))

    def _paced(self, rate: float) -> tuple[float, float]:
        """(rate, burst) of this replica's bucket for a group-wide `rate`: both scaled by the share, so
        the replicas' bursts add up to one burst too."""
        paced = rate * self.share
        return paced, paced * self._burst_s

    def rate_for(self, sender: str, sender_kind: str) -> float:
        """Per-second rate for this sender: its override, else its kind's default (long code if unknown)."""
        if sender in self._overrides:
            return self._overrides[sender]
        return self._rates.get(sender_kind, self._rates["long_code"])

    def cost(self, sender_kind: str, segments: int) -> float:
        """Tokens one message costs: its segments for SMS senders when counting segments, else 1."""
        if self.unit == "segments" and sender_kind in SEGMENT_KINDS:
            return float(max(1, segments))
        return 1.0

    def book(self, sender: str, sender_kind: str, segments: int) -> Ticket:
        """Reserve one message for `sender`; the ticket says how long to wait before sending it."""
        entry = self._buckets.get(sender)
        if entry is None:
            rate = self.rate_for(sender, sender_kind)
            entry = self._buckets[sender] = (TokenBucket(*self._paced(rate), clock=self._clock), rate)
        bucket = entry[0]
        position, wait = bucket.book(self.cost(sender_kind, segments))
        return Ticket(bucket, position, wait, bucket.epoch)

    def still_to_wait(self, ticket: Ticket) -> float:
        """After waiting `ticket.wait`: more seconds to wait when the rate was lowered meanwhile, else 0.
        (A raised rate is not waited for: the ticket is then late, never early.)"""
        if ticket.bucket.epoch == ticket.epoch:
            return 0.0
        ticket.epoch = ticket.bucket.epoch
        ticket.wait = ticket.bucket.wait_for(ticket.position)
        return ticket.wait

    def reserve(self, sender: str, sender_kind: str, segments: int) -> float:
        """Reserve one message for `sender`; return the seconds to wait before sending it."""
        return self.book(sender, sender_kind, segments).wait


class AdaptiveLimit:
    """AIMD concurrency limit: x`backoff` on throttling (once per cooldown), +1 per `limit` successes."""

    def __init__(
        self,
        initial: int,
        minimum: int = 1,
        maximum: int | None = None,
        *,
        backoff: float = 0.7,
        cooldown_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        maximum = initial if maximum is None else maximum
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError(f"need 1 <= minimum <= initial <= maximum, got {minimum}, {initial}, {maximum}")
        if not 0 < backoff < 1:
            raise ValueError(f"backoff must be between 0 and 1, got {backoff}")
        self.minimum = minimum
        self.maximum = maximum
        self._floor = minimum  # the minimum asked for; a smaller maximum lowers `minimum` with it
        self._value = float(initial)
        self._backoff = backoff
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._last_decrease: float | None = None
        self._successes = 0

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return max(self.minimum, int(self._value))

    def on_throttle(self) -> bool:
        """Twilio said slow down (429/20429, queue full). Return True when the limit was lowered.

        Requests already in flight when the first 429 arrives tend to be throttled too; counting a
        whole burst of them as one signal avoids collapsing the limit to the minimum at once.
        """
        now = self._clock()
        if self._last_decrease is not None and now - self._last_decrease < self._cooldown_s:
            return False
        self._last_decrease = now
        self._value = max(float(self.minimum), self._value * self._backoff)
        self._successes = 0
        return True

    def on_success(self) -> None:
        """A request went through; every `limit` successes (about one round trip) add one slot."""
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self._value = min(float(self.maximum), self._value + 1)

    def set_maximum(self, maximum: int) -> None:
        """Change the ceiling (this replica's share of the in-flight budget changed): the limit keeps
        its place between minimum and maximum, so what throttling taught is not forgotten."""
        if maximum < 1:
            raise ValueError(f"maximum must be >= 1, got {maximum}")
        if maximum == self.maximum:
            return
        self._value *= maximum / self.maximum
        self.maximum = maximum
        self.minimum = min(self._floor, maximum)
        self._value = min(float(maximum), max(float(self.minimum), self._value))
