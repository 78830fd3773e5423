"""Wait until a Kafka broker can create a topic: an open port alone does not mean a usable broker."""

import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def wait_ready(bootstrap: str, timeout_s: float) -> bool:
    """Return True once a readiness topic exists (created now or before), False at the deadline."""
    # log_level 0 silences librdkafka's expected "connection refused" lines while the broker boots.
    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000, "log_level": 0}
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            future = admin.create_topics([NewTopic("__local_kafka_ready", 1, 1)], request_timeout=5)
            future["__local_kafka_ready"].result(timeout=10)
            return True
        except KafkaException as exc:
            if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                return True
        except Exception:  # noqa: BLE001  any failure here means "not ready yet"
            pass
        time.sleep(0.5)
    return False


if __name__ == "__main__":
    sys.exit(0 if wait_ready(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 60) else 1)
