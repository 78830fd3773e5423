"""Start-up's wait for Twilio: an outage is waited out, a refusal is not."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.errors import ErrorClass, TwilioError
from consumer.service import upkeep
from tests.fake_twilio import FakeTwilio

NO_ANSWER = TwilioError("cannot reach Twilio: ReadTimeout", error_class=ErrorClass.RETRYABLE)
REFUSED = TwilioError("Twilio refused the credential check", error_class=ErrorClass.CONFIGURATION)


class Flaky(FakeTwilio):
    """Answers the credential check with each of `errors` in turn, then as an active account."""

    def __init__(self, *errors: TwilioError) -> None:
        super().__init__()
        self.errors = list(errors)
        self.checks = 0

    async def check_credentials(self) -> dict[str, Any]:
        self.checks += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"status": "active"}


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    delays: list[float] = []
    clock = [0.0]

    async def sleep(delay: float) -> None:
        delays.append(delay)
        clock[0] += delay

    monkeypatch.setattr(upkeep.asyncio, "sleep", sleep)
    monkeypatch.setattr(upkeep.time, "monotonic", lambda: clock[0])
    return delays


async def test_no_answer_is_waited_out_with_a_growing_pause(slept: list[float]) -> None:
    twilio = Flaky(NO_ANSWER, NO_ANSWER, NO_ANSWER)
    await upkeep.wait_for_twilio(twilio, wait_s=60)
    assert twilio.checks == 4
    assert slept == [0.5, 1.0, 2.0]


async def test_a_refusal_is_raised_at_once(slept: list[float]) -> None:
    twilio = Flaky(REFUSED)
    with pytest.raises(TwilioError) as raised:
        await upkeep.wait_for_twilio(twilio, wait_s=60)
    assert raised.value.error_class is ErrorClass.CONFIGURATION
    assert twilio.checks == 1
    assert slept == []


async def test_no_answer_past_the_wait_is_raised_naming_the_cause(slept: list[float]) -> None:
    twilio = Flaky(*[NO_ANSWER] * 20)
    with pytest.raises(TwilioError, match="ReadTimeout"):
        await upkeep.wait_for_twilio(twilio, wait_s=5)
    assert sum(slept) <= 5
    assert twilio.checks == len(slept) + 1
