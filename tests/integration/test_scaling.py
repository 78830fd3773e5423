"""Several replicas share Twilio's budgets: real broker, the simulator measuring each sender's rate."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections import Counter
from collections.abc import Callable

import pytest

from consumer.metrics import Metrics
from consumer.service.parts import Parts
from consumer.service.service import Service
from consumer.settings import Settings
from consumer.simulator import SimulatorHandle
from tests.integration.conftest import order_event
from tests.integration.test_service import Journal, produce

pytestmark = pytest.mark.integration

LONG_CODE = "+14155550100"
RATE = 6.0  # segments per second, for the whole group (a long code's 1/s would make the test slow)
WINDOW_S = 5.0

LONG_CODE_MAPPING = textwrap.dedent(
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
          phone_number: "{LONG_CODE}"
        content:
          body: "Order {{{{ properties.order_id }}}} seq {{{{ properties.seq }}}}"
        policies:
          consent: allow_unknown
    """
)


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(1200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not come true within a minute")


async def wait_for_messages(simulator: SimulatorHandle, count: int) -> None:
    await wait_until(lambda: len(simulator.messages()) >= count)


def assigned(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("kafka_twilio_assigned_partitions") or 0.0


async def test_three_replicas_send_one_long_code_at_no_more_than_its_rate_in_total_across_rebalances(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    simulator: SimulatorHandle,
    service_settings: Callable[..., Settings],
) -> None:
    topic = new_topic(partitions=6)
    events = [order_event(n) for n in range(150)]
    produce(kafka_bootstrap, topic, events)
    # A small buffer: what a replica has booked ahead on the sender's bucket stays short.
    settings = service_settings(
        [topic], LONG_CODE_MAPPING, CONSUMER_SENDER_RATES=json.dumps({LONG_CODE: RATE}),
        CONSUMER_MAX_BUFFERED=12,
    )  # fmt: skip
    journals: list[Journal] = [[], [], []]
    metrics = [Metrics() for _ in journals]
    replicas = [
        Service(
            settings,
            Parts.real(settings),
            metrics=m,
            journal=lambda *r, j=j: j.append(r),
            exit_when_idle_s=2,
            handle_signals=False,
        )
        for j, m in zip(journals, metrics, strict=True)
    ]
    # Each join is a rebalance in the middle of the stream; the rate is measured across them.
    runs = [asyncio.create_task(replicas[0].run())]
    await wait_for_messages(simulator, 15)
    runs.append(asyncio.create_task(replicas[1].run()))
    await wait_until(lambda: assigned(metrics[1]) > 0)
    runs.append(asyncio.create_task(replicas[2].run()))
    assert await asyncio.wait_for(asyncio.gather(*runs), 180) == [0, 0, 0]

    bodies = Counter(m["Body"] for m in simulator.messages())
    assert len(bodies) == len(events), "nothing lost"
    assert max(bodies.values()) == 1, "nothing sent twice"
    rate = simulator.sender_rate(LONG_CODE, WINDOW_S)
    assert rate is not None
    assert rate.segments == len(events)
    # The group's bursts add up to one second of sending; one more second of slack for late timers on
    # a loaded machine. Three replicas each pacing at the full rate would reach 3 x RATE.
    allowed = RATE * WINDOW_S + RATE + RATE
    assert rate.peak_segments <= allowed, f"{rate.peak_segments} segments within {WINDOW_S} s"
    assert rate.segments <= RATE * (rate.last_at - rate.first_at) + 2 * RATE
    assert all(journals), "every replica took a share of the partitions"
