"""Upkeep beside the poll loop: consumer lag and broker health, producer delivery reports, and the
credential re-check that lifts a configuration halt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from confluent_kafka import TopicPartition

from consumer.errors import ErrorClass, TwilioError
from consumer.kafka.clients import ConsumerLike
from consumer.kafka.offsets import OffsetTracker
from consumer.kafka.thread import KafkaThread
from consumer.metrics import Metrics
from consumer.service.health import Health
from consumer.service.parts import Runtime, Twilio

log = logging.getLogger(__name__)

CREDENTIAL_RECHECK_S = 15.0
# How often the probe looks at the breaker, and its backoff while Twilio is down: it resumes sending
# within a few seconds of Twilio answering again, without hammering it while it does not.
PROBE_CHECK_S = 0.25
PROBE_FIRST_S = 0.5
PROBE_MAX_S = 5.0


async def wait_for_twilio(client: Twilio, wait_s: float) -> None:
    """The credential check, waited on while Twilio does not answer (an outage at start-up makes the
    service wait, like any other), for at most `wait_s`: after that, no answer more likely means a
    wrong region or base URL, which the error names. A refusal (CONFIGURATION) is raised at once."""
    deadline = time.monotonic() + wait_s
    delay = 0.5
    while True:
        try:
            await client.check_credentials()
            return
        except TwilioError as error:
            if error.error_class is ErrorClass.CONFIGURATION or time.monotonic() + delay > deadline:
                raise
            log.warning("Twilio does not answer yet, trying again in %.1f s: %s", delay, error.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class Upkeep:
    """The periodic chores of one run."""

    def __init__(
        self,
        rt: Runtime,
        consumer: ConsumerLike,
        *,
        thread: KafkaThread,
        metrics: Metrics,
        tracker: OffsetTracker,
        health: Health,
        client: Twilio,
        probe_topic: str,
    ) -> None:
        self.rt = rt
        self.consumer = consumer
        self.thread = thread
        self.metrics = metrics
        self.tracker = tracker
        self.health = health
        self.client = client
        self.probe_topic = probe_topic

    async def lag(self) -> None:
        """Set `consumer_lag` per assigned partition: high watermark minus committed offset."""
        highs = await self.thread.call(self._watermarks, sorted(self.rt.assignments.assigned))
        for tp, high in highs.items():
            committed = self.tracker.committed(tp)
            if high >= 0 and committed is not None:
                self.metrics.consumer_lag.labels(tp[0], str(tp[1])).set(max(0, high - committed))

    def _watermarks(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """High watermarks (on the Kafka thread); also tells whether the brokers answer again."""
        if not self.health.broker_ok:
            # librdkafka reports "all brokers down" but never that one is back, and a short outage
            # causes no rebalance: ask a broker, or readiness would stay false until the next one.
            with contextlib.suppress(Exception):
                self.consumer.list_topics(self.probe_topic, timeout=1.0)
                self.health.broker_ok = True
        highs: dict[tuple[str, int], int] = {}
        for topic, partition in tps:
            with contextlib.suppress(Exception):
                tp = TopicPartition(topic, partition)
                highs[(topic, partition)] = self.consumer.get_watermark_offsets(tp, cached=True)[1]
        return highs

    async def probe_twilio(self) -> None:
        """While the breaker is open, ask Twilio with backoff; its first answer closes the breaker."""
        breaker = self.rt.delivery.breaker
        while True:
            await asyncio.sleep(PROBE_CHECK_S)
            delay = PROBE_FIRST_S
            while breaker.open:
                if await self.client.probe():
                    breaker.success()
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, PROBE_MAX_S)

    async def watch_credentials(self) -> None:
        """While sending is halted by a configuration error, check the credentials again, and resume."""
        halting = self.rt.delivery.halting
        while True:
            await asyncio.sleep(CREDENTIAL_RECHECK_S)
            if not halting.halted:
                continue
            try:
                await self.client.check_credentials()
            except TwilioError as error:
                log.error("Twilio credential check still failing: %s", error.message)
                continue
            halting.resume()
