"""Segment's translated sendMessage cases, sent: the simulator (validating against Twilio's spec and
rules) accepts each body that equals Segment's and receives exactly the rendered form."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from consumer.settings import TwilioSettings
from consumer.simulator import SimulatorConfig, SimulatorHandle, running_simulator
from consumer.simulator.config import sample_templates
from consumer.twilio.client import TwilioClient
from tests.unit.pipeline.test_segment_parity import CASES, Case, _outcome

SENDS = [c for c in CASES if c.segment != "refused" and c.verdict == "same"]
SEGMENT_HX = "HX1234567890abcdef1234567890abcdef"  # the Content Template Segment's tests send


def _templates() -> list[dict[str, Any]]:
    text = dict(sample_templates()[0])
    names = {n for c in SENDS for n in (c.mapping.get("content", {}).get("variables") or {})}
    return [*sample_templates(), {**text, "sid": SEGMENT_HX, "friendly_name": "Template Name",
                                  "variables": dict.fromkeys(sorted(names), "x")}]  # fmt: skip


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(SimulatorConfig(seed=17, templates=_templates())) as handle:
        yield handle


@pytest.fixture
async def client(sim: SimulatorHandle) -> AsyncIterator[TwilioClient]:
    sim.reset()
    settings = TwilioSettings(
        account_sid=sim.account_sid, api_key_sid=sim.api_key_sid, api_key_secret=sim.api_key_secret,
        base_url=sim.base_url, timeout_s=5.0,
    )  # fmt: skip
    async with TwilioClient(settings, max_connections=4) as c:
        yield c


@pytest.mark.parametrize("case", SENDS, ids=[c.segment_test for c in SENDS])
async def test_a_body_equal_to_segments_is_accepted_by_the_simulator_as_sent(
    case: Case, client: TwilioClient, sim: SimulatorHandle
) -> None:
    _, params = _outcome(case)
    result = await client.send(params)
    assert result.error_code is None
    (received,) = sim.messages()
    assert received["sid"] == result.sid
    assert [tuple(p) for p in received["params"]] == list(params)
