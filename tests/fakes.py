"""Stubs of confluent-kafka (and, from tests/fake_twilio.py, Twilio) for unit tests of the service,
without a broker or HTTP.

`MessageStub` stands in for `confluent_kafka.Message` (quix-streams' ConfluentKafkaMessageStub is the
model). `FakeCluster` is a few in-memory topics; `FakeKafka(cluster).clients()` hands the service
consumers, producers and an admin client over it. A group consumer's assignment is what the test
says (`consumer.rebalance(assign=…, revoke=…, lose=…)`); the callbacks then run on the thread that
calls `consume()`, as librdkafka runs them. Integration tests use the real broker instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from consumer.kafka.clients import KafkaClients
from consumer.state.store import LedgerStore


class MessageStub:
    """A `confluent_kafka.Message` with the accessors the project calls."""

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        error: RdKafkaError | None = None,
        timestamp_ms: int = 0,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._value, self._key, self._headers, self._error = value, key, headers, error
        self._timestamp = (TIMESTAMP_CREATE_TIME, timestamp_ms or int(time.time() * 1000))

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> RdKafkaError | None:
        return self._error

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


@dataclass
class FakeCluster:
    """Topics as lists of records per partition, and the committed offsets of each group."""

    topics: dict[str, list[list[MessageStub]]] = field(default_factory=dict)
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def create(self, topic: str, partitions: int = 1) -> None:
        with self.changed:
            self.topics.setdefault(topic, [[] for _ in range(partitions)])

    def append(self, topic: str, partition: int, value: bytes | None, key: bytes | None = None,
               headers: list[tuple[str, bytes]] | None = None) -> int:  # fmt: skip
        with self.changed:
            log = self.topics[topic][partition]
            log.append(MessageStub(topic, partition, len(log), value, key, headers))
            self.changed.notify_all()
            return len(log) - 1


class _Metadata:
    def __init__(self, cluster: FakeCluster) -> None:
        self.topics = {
            name: type("T", (), {"partitions": dict.fromkeys(range(len(parts))), "error": None})()
            for name, parts in cluster.topics.items()
        }


class _Done:
    def result(self, timeout: float | None = None) -> None:
        return None


class FakeAdmin:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def list_topics(self, timeout: float = -1) -> _Metadata:
        return _Metadata(self.cluster)

    def create_topics(self, topics: list[Any], request_timeout: float = -1) -> dict[str, _Done]:
        for new in topics:
            self.cluster.create(new.topic, new.num_partitions)
        return {new.topic: _Done() for new in topics}


class FakeProducer:
    """Queues records; `poll`/`flush` append them to the cluster and serve their delivery reports."""

    def __init__(self, cluster: FakeCluster, config: dict[str, Any] | None = None) -> None:
        self.cluster = cluster
        self.config = config or {}
        self.queue: list[tuple[str, int, bytes | None, bytes | None, Any, Callable[..., None] | None]] = []
        self.refuse: Callable[[str, bytes | None], Exception | None] = lambda topic, value: None
        self.held: set[str] = set()  # topics whose records the broker does not acknowledge yet

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int = 0,
                headers: Any = None, on_delivery: Callable[..., None] | None = None) -> None:  # fmt: skip
        refused = self.refuse(topic, value)
        if refused is not None:
            raise refused
        self.queue.append((topic, partition, key, value, headers, on_delivery))

    def release(self, topic: str) -> None:
        """The broker acknowledges `topic`'s records again."""
        self.held.discard(topic)

    def poll(self, timeout: float = 0) -> int:
        served = [r for r in self.queue if r[0] not in self.held]
        self.queue = [r for r in self.queue if r[0] in self.held]
        for topic, partition, key, value, headers, on_delivery in served:
            self.cluster.create(topic)
            offset = self.cluster.append(topic, partition, value, key, headers)
            if on_delivery is not None:
                on_delivery(None, MessageStub(topic, partition, offset, value, key, headers))
        return len(served)

    def flush(self, timeout: float = -1) -> int:
        self.poll(0)
        return 0

    def __len__(self) -> int:
        return len(self.queue)


@dataclass(frozen=True)
class CommitResult:
    """What a synchronous commit returns per partition (confluent's TopicPartition.error is read-only)."""

    topic: str
    partition: int
    offset: int
    error: RdKafkaError | None


class FakeConsumer:
    """A consumer over the cluster. Group members are assigned partitions by the test."""

    def __init__(self, cluster: FakeCluster, config: dict[str, Any]) -> None:
        self.cluster = cluster
        self.config = config
        self.group = str(config.get("group.id", ""))
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.paused: set[tuple[str, int]] = set()
        self.pending_rebalances: list[tuple[str, list[tuple[str, int]]]] = []
        self.errors: list[MessageStub] = []
        self.commit_error: Callable[[tuple[str, int]], RdKafkaError | None] = lambda tp: None
        self.commits: list[dict[tuple[str, int], int]] = []
        self.closed = False

    # -- what the test does ------------------------------------------------------------------------

    def rebalance(self, *, assign: list[tuple[str, int]] = (), revoke: list[tuple[str, int]] = (),  # type: ignore[assignment]
                  lose: list[tuple[str, int]] = ()) -> None:  # type: ignore[assignment]  # fmt: skip
        """Queue a rebalance: its callbacks run inside the next `consume()`, on the Kafka thread."""
        with self.cluster.changed:
            for kind, tps in (("revoke", revoke), ("lost", lose), ("assign", assign)):
                if tps:
                    self.pending_rebalances.append((kind, list(tps)))
            self.cluster.changed.notify_all()

    # -- what the service does ---------------------------------------------------------------------

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.callbacks = callbacks

    def assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.positions[(tp.topic, tp.partition)] = max(0, tp.offset)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.positions]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            self._rebalance()  # outside the lock: a revoke waits for the loop, which produces
            with self.cluster.changed:
                batch = self._take(num_messages)
                if batch or time.monotonic() >= deadline:
                    return batch
                if not self.pending_rebalances:
                    self.cluster.changed.wait(max(0.0, deadline - time.monotonic()))

    def _rebalance(self) -> None:
        while True:
            with self.cluster.changed:
                if not self.pending_rebalances:
                    return
                kind, tps = self.pending_rebalances.pop(0)
                if kind == "assign":
                    for tp in tps:
                        self.positions[tp] = self.cluster.committed.get((self.group, *tp), 0)
            parts = [TopicPartition(t, p) for t, p in tps]
            if kind == "assign":
                self.callbacks["on_assign"](self, parts)
                continue
            self.callbacks["on_revoke" if kind == "revoke" else "on_lost"](self, parts)
            with self.cluster.changed:
                for tp in tps:
                    self.positions.pop(tp, None)
                    self.paused.discard(tp)

    def _take(self, limit: int) -> list[Any]:
        batch: list[Any] = self.errors[:limit]
        del self.errors[: len(batch)]
        for tp, position in list(self.positions.items()):
            if tp in self.paused:
                continue
            log = self.cluster.topics.get(tp[0], [])[tp[1]]
            taken = log[position : position + limit - len(batch)]
            batch += taken
            self.positions[tp] = position + len(taken)
        return batch

    def commit(self, offsets: list[TopicPartition] | None = None, asynchronous: bool = True) -> list[Any]:
        results = []
        stored = {}
        for tp in offsets or []:
            error = self.commit_error((tp.topic, tp.partition))
            if error is None:
                self.cluster.committed[(self.group, tp.topic, tp.partition)] = tp.offset
                stored[(tp.topic, tp.partition)] = tp.offset
            results.append(CommitResult(tp.topic, tp.partition, tp.offset, error))
        self.commits.append(stored)
        return results

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        stored = self.cluster.committed
        return [
            TopicPartition(tp.topic, tp.partition, stored.get((self.group, tp.topic, tp.partition), -1001))
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self.cluster.topics.get(partition.topic, [[]])[partition.partition])

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> _Metadata:
        return _Metadata(self.cluster)

    def close(self) -> None:
        self.closed = True


class FakeKafka:
    """Client factories over one cluster; remembers the clients it made."""

    def __init__(self, cluster: FakeCluster | None = None) -> None:
        self.cluster = cluster or FakeCluster()
        self.consumers: list[FakeConsumer] = []
        self.producers: list[FakeProducer] = []

    def clients(self) -> KafkaClients:
        return KafkaClients({}, consumer_factory=self._consumer, producer_factory=self._producer,
                            admin_factory=lambda _config: FakeAdmin(self.cluster))  # fmt: skip

    def _consumer(self, config: dict[str, Any]) -> FakeConsumer:
        consumer = FakeConsumer(self.cluster, config)
        self.consumers.append(consumer)
        return consumer

    def _producer(self, config: dict[str, Any]) -> FakeProducer:
        producer = FakeProducer(self.cluster, config)
        self.producers.append(producer)
        return producer

    @property
    def group_consumer(self) -> FakeConsumer:
        """The consumer the service subscribed with (not a changelog reader)."""
        return next(c for c in self.consumers if c.callbacks)


_stores: list[LedgerStore] = []


def store() -> LedgerStore:
    """A state store in a temporary directory, closed and removed after the test (tests/conftest.py)."""
    made = LedgerStore(None)
    _stores.append(made)
    return made


def close_stores() -> None:
    while _stores:
        _stores.pop().close()
