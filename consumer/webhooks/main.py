"""`kafka-twilio webhooks`: the webhook receiver, one stateless replica of many behind a Service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from consumer.errors import ConsumerError, SettingsError
from consumer.events.encode import Encoder
from consumer.kafka.clients import KafkaClients
from consumer.kafka.reports import ReportPump
from consumer.logs import configure_logging
from consumer.metrics import Metrics
from consumer.service.main import run_loop
from consumer.settings import Settings, load_settings
from consumer.state.suppression_topic import ensure_suppression_topic
from consumer.twilio.codes import ERROR_MEANINGS
from consumer.webhooks.receiver import Receiver, Topics, build_app
from consumer.webhooks.signature import Signatures

log = logging.getLogger(__name__)

#: Records waiting in librdkafka before a post is refused (503) rather than queued.
PRODUCER_CONFIG = {"linger.ms": "2", "enable.idempotence": "true", "acks": "all"}


def tokens(settings: Settings) -> list[str]:
    """The Auth Tokens webhooks may be signed with: the primary, and the secondary during a rotation."""
    t = settings.twilio
    found = [s.get_secret_value() for s in (t.auth_token, t.auth_token_secondary) if s is not None]
    if not found:
        raise SettingsError(
            "TWILIO_AUTH_TOKEN: required by `webhooks` (Twilio signs webhooks with the account's Auth Token, "
            "even where sending uses an API key); set TWILIO_AUTH_TOKEN_SECONDARY too during a rotation"
        )
    return found


async def serve(settings: Settings, *, ready: asyncio.Future[int] | None = None,
                stop: asyncio.Event | None = None, metrics: Metrics | None = None,
                signals: bool = True) -> int:  # fmt: skip
    """Run the receiver until `stop` (or SIGTERM); `ready` gets the bound port."""
    k, w = settings.kafka, settings.webhooks
    clients = KafkaClients.from_settings(k)
    await asyncio.to_thread(ensure_suppression_topic, clients, k.suppression_topic)
    producer = clients.producer(PRODUCER_CONFIG)
    pump = asyncio.create_task(ReportPump(producer).run())  # acknowledgements, on this loop
    metrics = metrics or Metrics()
    metrics.name_error_codes(ERROR_MEANINGS)
    encoder = Encoder(encoding="single-object", schemas_dir=settings.service.schemas_dir)
    receiver = Receiver(
        producer=producer, encoder=encoder,
        topics=Topics(k.status_topic, k.suppression_topic), signatures=Signatures(tokens(settings)),
        metrics=metrics, codes=frozenset(settings.service.suppression_codes),
        base_url=w.public_url, ack_timeout_s=w.ack_timeout_s,
    )  # fmt: skip
    runner = web.AppRunner(build_app(receiver), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, w.host, w.port)
    await site.start()
    port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    log.info("webhook receiver on port %d (status %s, inbound %s)", port, k.status_topic, k.suppression_topic)
    stop = stop or asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGTERM, signal.SIGINT) if signals else ():
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set_result(port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # stops accepting, lets answers in progress finish
        pump.cancel()  # before the flush below, so reports are never served by two threads at once
        await asyncio.to_thread(producer.flush, 10)
    return 0


@contextlib.contextmanager
def running_receiver(settings: Settings, metrics: Metrics | None = None) -> Iterator[tuple[int, Metrics]]:
    """The receiver on its own thread and event loop, for the demo and the tests: yields (port, metrics)."""
    loop = asyncio.new_event_loop()
    metrics = metrics or Metrics()
    stop = asyncio.Event()
    ready: asyncio.Future[int] = loop.create_future()
    done = threading.Event()

    def run() -> None:
        try:
            loop.run_until_complete(serve(settings, ready=ready, stop=stop, metrics=metrics, signals=False))
        finally:
            done.set()

    thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
    thread.start()

    async def started() -> int:
        return await asyncio.wait_for(asyncio.shield(ready), 60)

    try:
        port = asyncio.run_coroutine_threadsafe(started(), loop).result(timeout=70)
    except BaseException:
        loop.call_soon_threadsafe(stop.set)
        raise
    try:
        yield port, metrics
    finally:
        loop.call_soon_threadsafe(stop.set)
        done.wait(timeout=30)
        thread.join(timeout=5)
        loop.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kafka-twilio webhooks",
        description="Receive Twilio status callbacks and replies; produce status events to Kafka.",
    )
    parser.add_argument("--env-file", type=Path, help="read settings from this file (the environment wins)")
    parser.add_argument("--port", type=int, help="listen port (overrides WEBHOOKS_PORT)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env_file)
        if args.port is not None:
            settings.webhooks.port = args.port
        configure_logging(settings.service.log_level)
        tokens(settings)
        return run_loop(serve(settings))
    except SettingsError as error:
        print(f"kafka-twilio: {error}", file=sys.stderr)
        return 2
    except ConsumerError as error:
        print(f"kafka-twilio: {error}", file=sys.stderr)
        return 1
