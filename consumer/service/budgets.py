"""Budgets the consumer group shares: each replica takes its partition share of them.

Twilio's limits are per sender (segments per second) and per account (requests in flight), not per
replica. A replica that owns k of the n partitions of the source topics paces each sender at k/n of
its rate and keeps at most k/n of the in-flight budget, recomputed on every rebalance. No coordinator
is needed: Kafka's assignment already says who owns what, and a partition belongs to one member at a
time, so the shares never add up to more than one.

Why k/n is right: records are keyed by recipient (or user), so each sender's messages spread over
all partitions and a replica sees about k/n of each sender's traffic. What it costs when they do not
spread (a sender whose messages land on few partitions): the replicas that own them pace it at their
share only, so that sender goes slower than its rate allows (never faster), and its partitions lag.

The share changes at two moments: up when partitions are assigned (before their first record), down
once revoked partitions are drained (before another member can be given them). A replica owning
nothing keeps its last share: it has nothing to send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException

from consumer.metrics import Metrics
from consumer.pipeline.pacing import AdaptiveLimit, SenderLimits, split
from consumer.service.concurrency import ConcurrencyGate

log = logging.getLogger(__name__)


def in_flight_budget(max_in_flight: int, account_concurrency: int) -> int:
    """The group's in-flight budget: CONSUMER_MAX_IN_FLIGHT, bounded by Twilio's account concurrency
    (TWILIO_ACCOUNT_CONCURRENCY) when it is set."""
    return min(max_in_flight, account_concurrency) if account_concurrency > 0 else max_in_flight


def count_partitions(admin: Any, topics: list[str]) -> int | None:
    """Partitions of the source topics (blocking); None when Kafka cannot say."""
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException as exc:
        log.warning("cannot count the source topics' partitions (%s); budget shares unchanged", exc)
        return None
    total = 0
    for topic in topics:
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            return None
        total += len(described.partitions)
    return total


class Budgets:
    """Apply this replica's share to the sender rates and to the in-flight ceiling."""

    def __init__(
        self, *, limits: SenderLimits, adaptive: AdaptiveLimit, gate: ConcurrencyGate, metrics: Metrics,
        in_flight: int, topics: list[str], admin: Callable[[], Any],
    ) -> None:  # fmt: skip
        self.limits = limits
        self.adaptive = adaptive
        self.gate = gate
        self.metrics = metrics
        self.in_flight = in_flight
        self.topics = topics
        self._admin_factory = admin
        self._admin: Any = None  # made on first use, kept: one per rebalance would be wasteful
        self.total = 0  # partitions of the source topics, once known
        metrics.partition_share.set(1.0)

    @property
    def share(self) -> float:
        return self.limits.share

    def count(self) -> int | None:
        """Partitions of the source topics now (blocking: on the Kafka thread, in `on_assign`). Asked of
        an admin client of its own, not of the consumer whose rebalance callback is running."""
        if self._admin is None:
            self._admin = self._admin_factory()
        return count_partitions(self._admin, self.topics)

    def apply(self, owned: int, total: int | None = None) -> None:
        """This replica now owns `owned` of `total` partitions (`total` None: as last counted)."""
        if total:
            self.total = total
        if owned <= 0 or self.total <= 0:
            return
        share = min(1.0, owned / self.total)
        if share == self.limits.share and self.adaptive.maximum == split(self.in_flight, share):
            return
        self.limits.set_share(share)
        self.adaptive.set_maximum(split(self.in_flight, share))
        limit = self.adaptive.limit
        if self.gate.limit != limit:
            self.gate.limit = limit
        self.metrics.concurrency_limit.set(limit)
        self.metrics.partition_share.set(share)
        log.info(
            "budget share %d/%d: sender rates and in-flight ceiling (%d of %d) scaled to %.3f",
            owned, self.total, self.adaptive.maximum, self.in_flight, share,
        )  # fmt: skip
