"""Topics the service creates for itself (the ledger changelog), by error code, never by message text."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from consumer.kafka.errors import TOPIC_ALREADY_EXISTS, kafka_error


def ensure_topic(admin: Any, topic: str, *, like: list[str], config: dict[str, str]) -> int:
    """Create `topic` if missing, with as many partitions as the widest of the `like` topics;
    return its partition count. Raises KafkaError when Kafka cannot tell or refuses."""
    try:
        meta = admin.list_topics(timeout=30)
    except KafkaException as exc:
        raise kafka_error(exc, f"describe the topics to find {topic!r}") from exc
    if topic in meta.topics and meta.topics[topic].partitions:
        return len(meta.topics[topic].partitions)
    widest = max((len(meta.topics[t].partitions) for t in like if t in meta.topics), default=1)
    futures = admin.create_topics([NewTopic(topic, widest, -1, config=config)], request_timeout=30)
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        error = kafka_error(exc, f"create topic {topic!r}")
        if error.code != TOPIC_ALREADY_EXISTS:  # another replica won the race: fine
            raise error from exc
    return widest
