"""The Kafka edge's one error mapping: every librdkafka failure becomes `consumer.errors.KafkaError`.

confluent-kafka reports failures four ways: a `KafkaException` raised by a call, a `KafkaError` handed
to a delivery report, an error callback or a message's `error()`, a `BufferError` when the producer's
local queue is full, and per-partition errors on the `TopicPartition`s a commit returns. Each call
site passes what it got to `kafka_error`, and decides on `code` (librdkafka's error name), never on
message text.
"""

from __future__ import annotations

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

from consumer.errors import KafkaError

#: librdkafka error names the project acts on.
ALL_BROKERS_DOWN = "_ALL_BROKERS_DOWN"
PARTITION_EOF = "_PARTITION_EOF"
QUEUE_FULL = "_QUEUE_FULL"
TOPIC_ALREADY_EXISTS = "TOPIC_ALREADY_EXISTS"
# Both the local producer (before sending) and the broker refuse an oversized record with this code.
MSG_SIZE_TOO_LARGE = "MSG_SIZE_TOO_LARGE"


def kafka_error(problem: BaseException | RdKafkaError, what: str, fix: str = "") -> KafkaError:
    """`problem` as a KafkaError saying what failed (`what`), librdkafka's reason, and `fix` if given."""
    err: RdKafkaError | None = None
    if isinstance(problem, RdKafkaError):
        err = problem
    elif isinstance(problem, KafkaException) and problem.args and isinstance(problem.args[0], RdKafkaError):
        err = problem.args[0]
    if err is not None:
        detail = f"{err.str()} ({err.name()})"
        code, retriable, fatal = err.name(), bool(err.retriable()), bool(err.fatal())
    elif isinstance(problem, BufferError):
        detail, code, retriable, fatal = "the producer's local queue is full", QUEUE_FULL, True, False
    else:
        detail, code, retriable, fatal = f"{type(problem).__name__}: {problem}", "", False, False
    message = f"{what}: {detail}" + (f"; {fix}" if fix else "")
    return KafkaError(message, code=code, retriable=retriable, fatal=fatal)
