"""Fixtures for the service tests: the Twilio simulator on loopback and settings pointing at it."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from consumer.settings import Settings, load_settings
from consumer.simulator import SimulatorConfig, SimulatorHandle, running_simulator

ROOT = Path(__file__).resolve().parents[2]
SERVICE_SID = "MG" + "5" * 32

#: One inline SMS mapping: sends "seq N" so tests can check order and duplicates in the simulator.
ORDER_MAPPING = textwrap.dedent(
    f"""
    version: 1
    mappings:
      - id: order-sms
        trigger:
          event: Order Completed
        channel: sms
        recipient:
          sources: [properties.phone]
        sender:
          messaging_service: {SERVICE_SID}
        content:
          body: "Order {{{{ properties.order_id }}}} seq {{{{ properties.seq }}}}"
        policies:
          consent: allow_unknown
    """
)


@pytest.fixture
def simulator() -> Iterator[SimulatorHandle]:
    with running_simulator(SimulatorConfig(latency_ms=5, seed=7)) as sim:
        yield sim


@pytest.fixture
def service_env(
    kafka_bootstrap: str, simulator: SimulatorHandle, tmp_path: Path
) -> Callable[..., dict[str, str]]:
    """The environment of one service run: `service_env([topic], mappings=YAML, CONSUMER_X=...)`.

    Calls within one test share the group, dead-letter and ledger topics (a restart is the same service).
    """
    run = uuid.uuid4().hex[:8]

    def make(topics: list[str], mappings: str = ORDER_MAPPING, **env: Any) -> dict[str, str]:
        path = tmp_path / f"mappings-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(mappings)
        values = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "KAFKA_TOPICS": ",".join(topics),
            "KAFKA_GROUP_ID": f"svc-{run}",
            "KAFKA_DEAD_LETTER_TOPIC": f"dlq-{run}",
            "KAFKA_DEDUP_TOPIC": f"sent-{run}",
            "KAFKA_STATUS_TOPIC": f"status-{run}",
            "KAFKA_SUPPRESSION_TOPIC": f"suppressions-{run}",
            "TWILIO_ACCOUNT_SID": simulator.account_sid,
            "TWILIO_API_KEY_SID": simulator.api_key_sid,
            "TWILIO_API_KEY_SECRET": simulator.api_key_secret,
            "TWILIO_BASE_URL": simulator.base_url,
            "TWILIO_CONTENT_BASE_URL": simulator.base_url,
            "TWILIO_MESSAGING_BASE_URL": simulator.base_url,
            "CONSUMER_MAPPINGS": str(path),
            "CONSUMER_SCHEMAS_DIR": str(ROOT / "schemas"),
            "CONSUMER_METRICS_PORT": "0",
            "CONSUMER_METRICS_HOST": "127.0.0.1",
            "CONSUMER_DRAIN_GRACE_S": "10",
            "CONSUMER_RETRY_BASE_S": "0.05",
            "CONSUMER_RETRY_CAP_S": "1",
        }
        values.update({k: str(v) for k, v in env.items()})
        return values

    return make


@pytest.fixture
def service_settings(service_env: Callable[..., dict[str, str]]) -> Callable[..., Settings]:
    """Validated settings for an in-process service run (same arguments as `service_env`)."""

    def make(topics: list[str], mappings: str = ORDER_MAPPING, **env: Any) -> Settings:
        return load_settings(environ=service_env(topics, mappings, **env))

    return make


def order_event(n: int, *, user: str | None = None, phone: str | None = None, **props: Any) -> dict[str, Any]:
    """A Segment track event `Order Completed` with `seq` = n."""
    user = user or f"user-{n}"
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"msg-{uuid.uuid4().hex}",
        "userId": user,
        "timestamp": "2026-11-28T10:00:00Z",
        "properties": {"order_id": f"A-{n}", "seq": n, "phone": phone or f"+1415555{n % 10000:04d}", **props},
    }
