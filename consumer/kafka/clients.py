"""How the service makes its Kafka clients, and the subset of confluent-kafka's API it uses.

`KafkaClients` builds confluent-kafka's `Consumer`, `Producer` and `AdminClient` by default; tests pass
factories of their own stubs (`tests/fakes.py`) to drive the service without a broker. The client
settings are here too, each with the reason it is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from consumer.settings import KafkaSettings

Config = dict[str, Any]


class ConsumerLike(Protocol):
    """The calls the project makes on a confluent_kafka.Consumer."""

    def subscribe(self, topics: list[str], **callbacks: Any) -> None: ...
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]: ...
    def assign(self, partitions: list[Any]) -> None: ...
    def assignment(self) -> list[Any]: ...
    def pause(self, partitions: list[Any]) -> None: ...
    def resume(self, partitions: list[Any]) -> None: ...
    def commit(self, *args: Any, **kwargs: Any) -> Any: ...
    def committed(self, partitions: list[Any], timeout: float = -1) -> list[Any]: ...
    def get_watermark_offsets(self, partition: Any, timeout: float = -1, cached: bool = False) -> Any: ...
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...
    def close(self) -> None: ...


class ProducerLike(Protocol):
    """The calls the project makes on a confluent_kafka.Producer."""

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...
    def poll(self, timeout: float = -1) -> int: ...
    def flush(self, timeout: float = -1) -> int: ...
    def __len__(self) -> int: ...


def _consumer(config: Config) -> ConsumerLike:
    return cast(ConsumerLike, Consumer(config))


def _producer(config: Config) -> ProducerLike:
    return cast(ProducerLike, Producer(config))


@dataclass(frozen=True)
class KafkaClients:
    """Factories for Kafka clients sharing one base configuration (bootstrap, security, logging)."""

    base: Config
    consumer_factory: Callable[[Config], ConsumerLike] = _consumer
    producer_factory: Callable[[Config], ProducerLike] = _producer
    admin_factory: Callable[[Config], Any] = AdminClient

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> KafkaClients:
        # librdkafka's own log lines go through logging (JSON, masked) instead of raw stderr.
        return cls({**settings.client_config(), "logger": logging.getLogger("librdkafka")})

    def consumer(self, config: Config) -> ConsumerLike:
        return self.consumer_factory({**self.base, **config})

    def producer(self, config: Config) -> ProducerLike:
        return self.producer_factory({**self.base, **config})

    def admin(self) -> Any:
        return self.admin_factory(dict(self.base))


def service_consumer_config(settings: KafkaSettings, error_cb: Callable[[Any], None]) -> Config:
    """The service's group consumer: offsets stored and committed only by us (invariant 2)."""
    static = {"group.instance.id": settings.group_instance_id} if settings.group_instance_id else {}
    return {
        "group.id": settings.group_id,
        **static,
        # With static membership a restarted replica takes its partitions back at once; a replica that
        # does not come back hands them over after this long (the broker's default is 45 s).
        "session.timeout.ms": str(settings.session_timeout_ms),
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": settings.auto_offset_reset,
        # Revoke only the partitions that move: the others keep sending through a rebalance.
        "partition.assignment.strategy": "cooperative-sticky",
        # Bound librdkafka's own prefetch buffer: memory must not grow with the backlog. The real
        # buffer is ours (CONSUMER_MAX_BUFFERED records, seconds of sending); the prefetch only has to
        # cover a fetch round trip. Measured with a 1M-record backlog, 32768 or 8192 held ~105 MB more
        # than the same consumer on a 100k backlog; 2048 holds ~20 MB whatever the backlog
        # (bench/bench_e2e.py measures the whole service).
        "queued.max.messages.kbytes": "2048",
        # Latency: fetch.min.bytes stays 1, so the broker answers a fetch the moment one record is
        # there (fetch.wait.max.ms, 500 ms, only bounds an idle fetch and costs no latency); the
        # measured floor is Kafka's own produce -> consume time (bench/bench_latency.py). `take` below
        # hands each record over as soon as librdkafka has it.
        "error_cb": error_cb,
    }


def take(consumer: ConsumerLike, batch: int, wait_s: float) -> list[Any]:
    """Up to `batch` records: what librdkafka has already fetched, at once; when it has none, the first
    record to arrive within `wait_s` and whatever came with it. `consume(batch, wait_s)` alone waits
    until `batch` records or `wait_s` have passed, so at a low rate every record would wait `wait_s`;
    under load the first call returns full batches and the loop pays no more calls than before."""
    records = consumer.consume(batch, 0)
    if records:
        return records
    first = consumer.consume(1, wait_s)
    return first + consumer.consume(batch - 1, 0) if first else first


def service_producer_config() -> Config:
    """Ledger and dead-letter writes: idempotent (no duplicates on retry), batched for 1 ms."""
    # Every send waits for its intent's acknowledgement, so linger is send latency: librdkafka's 5 ms
    # default doubled the median event -> request time at 100 events/s (bench/bench_latency.py); under
    # load, writes still batch while earlier requests are in flight.
    return {"linger.ms": "1", "enable.idempotence": "true"}


async def settle(producer: ProducerLike, timeout_s: float) -> None:
    """Wait (on the loop) until the producer's outstanding writes are acknowledged or `timeout_s`
    passes, serving their delivery reports here, so what was acknowledged is finished first."""
    deadline = time.monotonic() + timeout_s
    while len(producer) > 0 and time.monotonic() < deadline:
        producer.poll(0)
        await asyncio.sleep(0.01)
    # A report served by another thread reaches the loop as a callback, queued before the producer
    # counted it done: one turn of the loop runs them all.
    await asyncio.sleep(0)
