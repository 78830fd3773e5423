"""/metrics, /healthz and /readyz over real HTTP on loopback."""

from __future__ import annotations

import httpx
import pytest

from consumer.metrics import Metrics
from consumer.service.health import HEALTH_PATH, METRICS_PATH, READY_PATH, build_app, start_server


@pytest.mark.parametrize("ready", [True, False])
async def test_probes_and_metrics_answer_on_one_port(ready: bool) -> None:
    metrics = Metrics()
    metrics.records_consumed.labels("events").inc(3)
    checks = {"partitions_assigned": ready, "broker_reachable": True, "twilio_credentials": True}
    app = build_app(metrics.registry, lambda: (ready, checks), lambda: True)
    runner, port = await start_server(app, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get(HEALTH_PATH)).status_code == 200
            answer = await client.get(READY_PATH)
            assert answer.status_code == (200 if ready else 503)
            assert answer.json() == {"ready": ready, "checks": checks}
            body = (await client.get(METRICS_PATH)).text
            assert 'kafka_twilio_records_consumed_total{topic="events"} 3.0' in body
    finally:
        await runner.cleanup()
