"""Commits: write the committable offsets to Kafka and believe only what Kafka says it stored.

A synchronous commit returns one `TopicPartition` per partition, each with its own error; a partition
whose commit failed keeps its old committed offset here too, and is tried again at the next commit.
Every commit is counted (`kafka_twilio_commits_total{result}`: ok, partial, failed).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from confluent_kafka import KafkaException, TopicPartition

from consumer.kafka.clients import ConsumerLike
from consumer.kafka.errors import kafka_error
from consumer.metrics import Metrics

log = logging.getLogger(__name__)

Offsets = Mapping[tuple[str, int], int]


def commit(consumer: ConsumerLike, offsets: Offsets, metrics: Metrics) -> dict[tuple[str, int], int]:
    """Commit `offsets` synchronously (call on the Kafka thread); return those Kafka stored."""
    if not offsets:
        return {}
    try:
        results = consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )
    except KafkaException as exc:
        metrics.commits.labels("failed").inc()
        log.warning("%s", kafka_error(exc, "offset commit failed (will retry)").message)
        return {}
    stored: dict[tuple[str, int], int] = {}
    for tp in results or []:
        if tp.error is None:
            stored[(tp.topic, tp.partition)] = offsets[(tp.topic, tp.partition)]
        else:
            error = kafka_error(tp.error, f"offset commit of {tp.topic}[{tp.partition}] failed (will retry)")
            log.warning("%s", error.message)
    metrics.commits.labels("ok" if len(stored) == len(offsets) else "partial" if stored else "failed").inc()
    return stored


def caught_up(consumer: ConsumerLike, topics: list[str]) -> bool:
    """True when the group has committed every partition of `topics` to its end (on the Kafka thread)."""
    try:
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None:
                return False
            tps = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
            for tp in consumer.committed(tps, timeout=10):
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                if high > low and tp.offset < high:
                    return False
    except KafkaException as exc:
        log.warning(
            "%s", kafka_error(exc, "could not tell whether the group caught up (will ask again)").message
        )
        return False
    return True
