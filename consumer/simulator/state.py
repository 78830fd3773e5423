"""The simulator's memory: messages received, sender queues, and the random draws it makes.

Time is the event loop's clock, passed in as `now` so the queue arithmetic is plain.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from consumer.simulator.config import SimulatorConfig
from consumer.simulator.rates import SenderRates


@dataclass
class StoredMessage:
    """One accepted message and its simulated life: queued until `sent_at`, then `final_status`."""

    sid: str
    params: list[tuple[str, str]]
    received_at: str  # ISO 8601 wall-clock time, for humans and tests
    date_created: str  # RFC 2822, as Twilio formats dates
    num_segments: int
    sent_at: float  # loop time the sender queue releases it
    done_at: float  # loop time of the final status
    created_at: float = 0.0  # loop time it was accepted
    wall_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    final_status: str = "delivered"
    error_code: int | None = None

    def first(self, key: str) -> str | None:
        return next((v for k, v in self.params if k == key), None)

    def wall_at(self, loop_time: float) -> datetime:
        """The wall-clock time of a loop time of this message's life."""
        return self.wall_created + timedelta(seconds=loop_time - self.created_at)

    def status_at(self, now: float, initial: str) -> str:
        if now >= self.done_at:
            return self.final_status
        return "sent" if now >= self.sent_at else initial

    def summary(self, now: float) -> dict[str, Any]:
        """What /_sim/messages shows for this message."""
        return {
            "sid": self.sid,
            "To": self.first("To"),
            "From": self.first("From"),
            "MessagingServiceSid": self.first("MessagingServiceSid"),
            "Body": self.first("Body"),
            "ContentSid": self.first("ContentSid"),
            "params": [list(p) for p in self.params],
            "received_at": self.received_at,
            "num_segments": self.num_segments,
            "status": self.status_at(now, "queued"),
        }


@dataclass
class SimulatorState:
    config: SimulatorConfig
    rng: random.Random = field(default_factory=random.Random)
    messages: deque[StoredMessage] = field(default_factory=deque)
    by_sid: dict[str, StoredMessage] = field(default_factory=dict)
    # A reconciling consumer lists by To; an index keeps that cheap when thousands are stored.
    by_to: dict[str, deque[StoredMessage]] = field(default_factory=dict)
    sender_free_at: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "201", "429/20429", ... for /_sim/stats
    drawn: int = 0  # requests that reached the failure draw
    rates: SenderRates = field(default_factory=SenderRates)  # what each sender was asked to send, when

    def __post_init__(self) -> None:
        if self.config.seed is not None:
            self.rng.seed(self.config.seed)

    def reset(self) -> None:
        self.messages.clear()
        self.by_sid.clear()
        self.by_to.clear()
        self.sender_free_at.clear()
        self.answers.clear()
        self.rates.clear()
        self.peak_in_flight = 0

    def latency_s(self) -> float:
        c = self.config
        jitter = self.rng.uniform(-c.latency_jitter_ms, c.latency_jitter_ms) if c.latency_jitter_ms else 0.0
        return max(0.0, c.latency_ms + jitter) / 1000.0

    def draw_failure(self) -> tuple[str, int] | None:
        """Injected failure for this request, or None: ("timeout"|"disconnect"|"drop"|"truncate", 0)
        or ("error", code). timeout, drop and truncate accept the message first."""
        c = self.config
        self.drawn += 1
        if self.drawn <= c.drop_after_accept_first:
            return "drop", 0
        if not (
            c.timeout_rate
            or c.disconnect_rate
            or c.drop_after_accept_rate
            or c.truncate_rate
            or c.error_rates
        ):
            return None
        r = self.rng.random()
        for kind, code, rate in (
            ("timeout", 0, c.timeout_rate),
            ("disconnect", 0, c.disconnect_rate),
            ("drop", 0, c.drop_after_accept_rate),
            ("truncate", 0, c.truncate_rate),
            *(("error", code, rate) for code, rate in c.error_rates.items()),
        ):
            if r < rate:
                return kind, code
            r -= rate
        return None

    def enqueue(self, sender: str, kind: str, segments: int, now: float) -> float | None:
        """Put `segments` on the sender's queue; return when they leave it, or None when it is full."""
        rate = self.config.sender_rates.get(kind) or 1.0
        start = max(now, self.sender_free_at.get(sender, now))
        if start - now > self.config.queue_seconds:
            return None
        self.sender_free_at[sender] = start + segments / rate
        return start

    def store(
        self, params: list[tuple[str, str]], num_segments: int, sent_at: float, now: float
    ) -> StoredMessage:
        wall = datetime.now(UTC)
        final_status, error_code = "delivered", None
        for code, rate in self.config.delivery_error_rates.items():
            if self.rng.random() < rate:
                final_status, error_code = "undelivered", code
                break
        to = next((v for k, v in params if k == "To"), "")
        if to in self.config.undelivered_to:
            final_status, error_code = "undelivered", self.config.undelivered_to[to]
        message = StoredMessage(
            sid="SM" + uuid.uuid4().hex,
            params=params,
            received_at=wall.isoformat(),
            date_created=format_datetime(wall, usegmt=True),
            num_segments=num_segments,
            sent_at=sent_at,
            done_at=sent_at + self.config.status_callback_delay_ms / 1000.0,
            final_status=final_status,
            error_code=error_code,
            created_at=now,
            wall_created=wall,
        )
        self.messages.append(message)
        sender = message.first("From") or message.first("MessagingServiceSid") or ""
        self.rates.record(sender, now, num_segments)
        self.by_sid[message.sid] = message
        self.by_to.setdefault(message.first("To") or "", deque()).append(message)
        while len(self.messages) > self.config.max_stored_messages:
            self._forget(self.messages.popleft())
        return message

    def _forget(self, message: StoredMessage) -> None:
        self.by_sid.pop(message.sid, None)
        to = message.first("To") or ""
        same = self.by_to.get(to, deque())
        if same and same[0] is message:  # the oldest goes first, so it heads its list
            same.popleft()
        elif message in same:
            same.remove(message)
        if not same:
            self.by_to.pop(to, None)

    def listable(self, to: str | None) -> list[StoredMessage]:
        """The stored messages a list request with this To filter can match."""
        return list(self.messages) if to is None else list(self.by_to.get(to, ()))
