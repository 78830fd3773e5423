"""The webhook receiver's routes: a signed Twilio post in, its status event acknowledged by Kafka, 200 out.

    POST /twilio/status   StatusCallback      ─► signature ─► status event (+ suppression change) ─► 200
    POST /twilio/inbound  a recipient's reply ─► signature ─► opt-out / opt-in / received event    ─► 200

A bad or missing signature is 403 and produces nothing. 200 is answered only once Kafka acknowledged
every record the post became; when Kafka refuses or does not answer in time the answer is 503, so
Twilio's retry (or its error log, for posts it does not retry) knows. Stateless: any replica serves
any post.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer.errors import WebhookError
from consumer.events.encode import Encoder
from consumer.kafka.clients import ProducerLike
from consumer.kafka.reports import on_loop
from consumer.metrics import Metrics
from consumer.pipeline.correlation import correlation
from consumer.webhooks.signature import Signatures, public_url
from consumer.webhooks.status import Produced, inbound_event, status_event

log = logging.getLogger(__name__)

STATUS_PATH, INBOUND_PATH = "/twilio/status", "/twilio/inbound"
UNREADY_S = 10.0
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@dataclasses.dataclass
class Topics:
    status: str
    suppression: str


class Receiver:
    """Turns webhook posts into acknowledged Kafka records; see the module docstring."""

    def __init__(
        self, *, producer: ProducerLike, encoder: Encoder, topics: Topics, signatures: Signatures,
        metrics: Metrics, codes: frozenset[int], base_url: str = "", ack_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.producer = producer
        self.encoder = encoder
        self.topics = topics
        self.signatures = signatures
        self.metrics = metrics
        self.codes = codes
        self.base_url = base_url
        self.ack_timeout_s = ack_timeout_s
        self.clock = clock
        self.failed_at = 0.0  # when Kafka last failed to acknowledge (readiness fails for a while)

    async def status(self, request: web.Request) -> web.Response:
        return await self._serve(request, "status")

    async def inbound(self, request: web.Request) -> web.Response:
        return await self._serve(request, "inbound")

    async def _serve(self, request: web.Request, kind: str) -> web.Response:
        started = time.perf_counter()
        try:
            response = await self._answer(request, kind)
        finally:
            self.metrics.webhook_answer_seconds.observe(time.perf_counter() - started)
        return response

    async def _answer(self, request: web.Request, kind: str) -> web.Response:
        form = await request.post()
        url = public_url(self.base_url, request.scheme, request.host, request.raw_path)
        if not self.signatures.valid(url, form, request.headers.get("X-Twilio-Signature", "")):
            self._count(kind, "forbidden")
            log.warning("webhook refused: bad X-Twilio-Signature", extra={"path": request.path})
            return web.Response(status=403, text="invalid X-Twilio-Signature")
        params = {k: str(v) for k, v in reversed(list(form.items()))}  # the first of repeated names wins
        now = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds")
        try:
            produced = (
                status_event(params, correlation(dict(request.query)), now, self.codes)
                if kind == "status"
                else inbound_event(params, now)
            )
        except WebhookError as error:
            self._count(kind, "bad_request")
            return web.Response(status=400, text=f"{error.field}: {error.message}")
        if not await self._produce(produced):
            self._count(kind, "kafka_failed")
            return web.Response(status=503, text="Kafka did not acknowledge; retry")
        self._count(kind, "ok")
        self._observe(produced)
        if kind == "inbound":
            return web.Response(text=EMPTY_TWIML, content_type="text/xml")
        return web.Response(status=200)

    async def _produce(self, produced: Produced) -> bool:
        """Produce the event (and the list change) and wait for Kafka's acknowledgement of each."""
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[bool]] = []

        def send(topic: str, key: str, value: bytes | None) -> None:
            done: asyncio.Future[bool] = loop.create_future()

            def report(err: Any, _msg: Any) -> None:
                if not done.done():
                    done.set_result(err is None)
                if err is not None:
                    log.error("webhook record not acknowledged by Kafka: %s", err)

            waits.append(done)
            try:
                self.producer.produce(topic, key=key.encode(), value=value, on_delivery=on_loop(report))
            except (BufferError, KafkaException) as exc:  # refused before queueing: answer 503
                log.error("webhook record refused by the Kafka client: %s", exc)
                done.set_result(False)

        send(self.topics.status, produced.key, self.encoder.encode(produced.event))
        if produced.change is not None:
            change = dataclasses.replace(produced.change, at=self.clock())
            send(self.topics.suppression, change.key, change.value())
        try:
            results = await asyncio.wait_for(asyncio.gather(*waits), self.ack_timeout_s)
        except TimeoutError:
            results = [False]
        if not all(results):
            self.failed_at = time.monotonic()
            return False
        return True

    @property
    def kafka_ok(self) -> bool:
        """False for `UNREADY_S` after Kafka failed to acknowledge (then traffic is tried again)."""
        return not self.failed_at or time.monotonic() - self.failed_at > UNREADY_S

    def _count(self, kind: str, result: str) -> None:
        self.metrics.webhook_requests.labels(kind, result).inc()

    def _observe(self, produced: Produced) -> None:
        props = produced.event["properties"]
        assert isinstance(props, dict)
        mapping = str(props.get("mapping_id") or "none")
        code = "" if produced.error_code is None else str(produced.error_code)
        self.metrics.message_status.labels(mapping, produced.status, code).inc()
        if produced.change is not None:
            action = "removed" if produced.change.reason is None else "added"
            self.metrics.suppression_changes.labels(action).inc()
        event_time = props.get("event_timestamp")
        if produced.status == "delivered" and isinstance(event_time, str):
            try:
                then = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
            except ValueError:
                return
            if then.tzinfo is not None:
                self.metrics.time_to_delivered.labels(mapping).observe(
                    max(0.0, self.clock() - then.timestamp())
                )


def build_app(receiver: Receiver) -> web.Application:
    """The receiver's routes plus /metrics, /healthz and /readyz on one port."""
    app = web.Application(client_max_size=64 * 1024)  # Twilio's posts are a few hundred bytes

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(receiver.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        ready = receiver.kafka_ok
        return web.json_response({"ready": ready, "checks": {"kafka_acknowledging": ready}},
                                 status=200 if ready else 503)  # fmt: skip

    app.router.add_post(STATUS_PATH, receiver.status)
    app.router.add_post(INBOUND_PATH, receiver.inbound)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
