"""Shared fixtures: a real Kafka broker, Schema Registry and Prometheus (session-wide); fresh topics."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest

from tests.fakes import close_stores
from tests.kafka import BrokerUnavailable, create_topic, kafka_broker
from tests.prometheus import Prometheus, PrometheusUnavailable, prometheus_bin
from tests.registry import RegistryProxy, RegistryUnavailable, schema_registry


def missing(what: str, exc: Exception) -> NoReturn:
    """A real part the tests need is not there: an error under CI (a skipped test proves nothing),
    a skip locally."""
    if os.environ.get("CI"):
        pytest.fail(f"CI needs {what}: {exc}")
    pytest.skip(f"no {what}: {exc}")


@pytest.fixture(autouse=True)
def _close_state_stores() -> Iterator[None]:
    """State stores a test made with tests.fakes.store() are closed and removed after it."""
    yield
    close_stores()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real Kafka broker. Skips locally without one; fails under CI."""
    try:
        with kafka_broker() as bootstrap:
            yield bootstrap
    except BrokerUnavailable as exc:
        missing("a real Kafka broker", exc)


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """Create a topic unique to the calling test: `new_topic(partitions=3)`."""

    def make(partitions: int = 1, name: str | None = None, config: dict[str, str] | None = None) -> str:
        return create_topic(kafka_bootstrap, name=name, partitions=partitions, config=config)

    return make


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """The URL of a real Confluent-compatible Schema Registry. Skips locally without one; fails under CI."""
    try:
        with schema_registry() as url:
            yield url
    except RegistryUnavailable as exc:
        missing("a real Schema Registry", exc)


@pytest.fixture
def registry_proxy(schema_registry_url: str) -> Iterator[RegistryProxy]:
    """A proxy in front of the real registry that a test can take down, slow down, and count through."""
    proxy = RegistryProxy(schema_registry_url)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus on loopback (1 s scrapes, our rules). Skips locally without one; fails under CI."""
    try:
        server = Prometheus(prometheus_bin(), tmp_path_factory.mktemp("prometheus"))
        server.start()
    except PrometheusUnavailable as exc:
        missing("Prometheus", exc)
    try:
        yield server
    finally:
        server.stop()
