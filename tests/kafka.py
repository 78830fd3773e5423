"""A real Kafka broker for tests: find one, or start the project's local broker.

Order: `KAFKA_BOOTSTRAP_SERVERS` when set; a testcontainers Kafka where a Docker engine answers;
otherwise the local broker from Maven Central jars (`deploy/kafka/local-kafka.sh up`), started here if
it is not running. Under `CI` a missing broker is an error, never a skip: an integration test that
silently skips proves nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
LOCAL_KAFKA = ROOT / "deploy" / "kafka" / "local-kafka.sh"


class BrokerUnavailable(RuntimeError):
    """No Kafka broker could be found or started."""


def _docker_reachable() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:  # noqa: BLE001  any failure means "no engine here"
        return False
    return True


def broker_reachable(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when a broker at `bootstrap` answers a metadata request."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:  # noqa: BLE001
        return False
    return True


@contextmanager
def kafka_broker() -> Iterator[str]:
    """Yield a bootstrap address of a real broker, starting one when needed."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        if not broker_reachable(env, 15):
            raise BrokerUnavailable(f"KAFKA_BOOTSTRAP_SERVERS={env} is set but no broker answers there")
        yield env
        return
    port = os.environ.get("KAFKA_PORT", "9092")
    local = f"127.0.0.1:{port}"
    if broker_reachable(local, 2):
        yield local
        return
    if _docker_reachable():
        from testcontainers.kafka import KafkaContainer  # type: ignore[import-untyped]

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    # Start the project's own broker, and stop it again afterwards: a test run leaves nothing behind
    # that it did not find running.
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(LOCAL_KAFKA), "up"], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BrokerUnavailable(f"could not start the local Kafka broker:\n{result.stderr[-3000:]}")
    try:
        yield local
    finally:
        subprocess.run(["bash", str(LOCAL_KAFKA), "down"], env=env, capture_output=True, check=False)


def create_topic(
    bootstrap: str, name: str | None = None, partitions: int = 1, config: dict[str, str] | None = None
) -> str:
    """Create a fresh topic (unique name unless given) and wait until it exists."""
    topic = name or f"test-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})], request_timeout=15)
    futures[topic].result(timeout=30)
    return topic
