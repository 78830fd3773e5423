"""One HTTP port for Prometheus and Kubernetes: /metrics, /healthz (alive), /readyz (ready to work)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumer.errors import KafkaError
from consumer.kafka.errors import ALL_BROKERS_DOWN, kafka_error
from consumer.metrics import Metrics

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"


@dataclass
class Health:
    """What readiness is made of, besides the assignment: set by the Kafka and Twilio edges."""

    metrics: Metrics
    broker_ok: bool = True
    credentials_ok: bool = False

    def broker_answered(self) -> None:
        self.broker_ok = True

    def on_client_error(self, err: Any) -> None:
        """librdkafka's error callback (on the Kafka thread): counted, logged, and broker health."""
        error = kafka_error(err, "Kafka client")
        self.broker_ok = error.code != ALL_BROKERS_DOWN
        self.count("client", error)

    def count(self, source: str, error: KafkaError) -> None:
        """A Kafka client's error, counted by librdkafka's code (and logged: nothing else reports it)."""
        self.metrics.kafka_errors.labels(source, error.code or "unknown").inc()
        log.warning("%s", error.message)


#: Returns (ready, {check name: passed}) — computed on each probe, never cached.
ReadinessCheck = Callable[[], tuple[bool, dict[str, bool]]]
#: Returns {check name: why it fails} for the failing checks that can say more than false.
ReadinessReasons = Callable[[], dict[str, str]]


def build_app(
    registry: CollectorRegistry,
    readiness: ReadinessCheck,
    alive: Callable[[], bool],
    reasons: ReadinessReasons = dict,
) -> web.Application:
    """The aiohttp application serving the three paths."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok = alive()
        return web.Response(status=200 if ok else 503, text="ok\n" if ok else "event loop stalled\n")

    async def readyz(_: web.Request) -> web.Response:
        ready, checks = readiness()
        body: dict[str, object] = {"ready": ready, "checks": checks}
        why = {name: text for name, text in reasons().items() if text and not checks.get(name, True)}
        if why:
            body["reasons"] = why
        return web.Response(
            status=200 if ready else 503, text=json.dumps(body) + "\n", content_type="application/json"
        )

    app = web.Application()
    app.router.add_get(METRICS_PATH, metrics)
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(READY_PATH, readyz)
    return app


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving on host:port (port 0 picks a free one); return the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:  # the bound (host, port, ...) of each listening socket
        bound = int(address[1])
    return runner, bound
