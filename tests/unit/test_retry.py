"""Backoff arithmetic and the per-record retry loop (with a fake send and a recorded sleep)."""

from __future__ import annotations

import pytest

from consumer.errors import ErrorClass, TwilioError
from consumer.pipeline.retry import RetryPolicy, compute_backoff, send_with_retries
from consumer.twilio.client import SendResult

OK = SendResult(sid="SM" + "1" * 32, status="queued", num_segments=1, error_code=None, latency_s=0.01)


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 1.0, 0.5),
        (1, 1.0, 1.0),
        (3, 1.0, 4.0),
        (3, 0.5, 2.0),
        (3, 0.0, 0.0),
        (10, 1.0, 60.0),  # capped
        (500, 0.5, 30.0),  # no overflow for absurd attempts
    ],
)
def test_backoff_is_a_full_jitter_draw_under_a_capped_exponential(
    attempt: int, rand: float, expected: float
) -> None:
    assert compute_backoff(attempt, base_s=0.5, cap_s=60.0, rand=rand) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rand", "retry_after", "expected"),
    [(0.1, 5.0, 5.0), (1.0, 0.1, 0.5), (0.0, 120.0, 120.0)],
)
def test_retry_after_is_a_floor_even_above_the_cap(rand: float, retry_after: float, expected: float) -> None:
    assert compute_backoff(0, base_s=0.5, cap_s=60.0, rand=rand, retry_after_s=retry_after) == expected


def test_negative_attempts_are_rejected() -> None:
    with pytest.raises(ValueError, match="attempt"):
        compute_backoff(-1, base_s=1, cap_s=1, rand=0.5)


def _error(error_class: ErrorClass, retry_after: float | None = None) -> TwilioError:
    return TwilioError("boom", error_class=error_class, code=20429, status=429, retry_after_s=retry_after)


class Script:
    """A send that fails with the scripted errors, then succeeds; records sleeps and retries."""

    def __init__(self, *errors: TwilioError) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.sleeps: list[float] = []
        self.retries: list[tuple[int, float]] = []

    async def send(self) -> SendResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return OK

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def on_retry(self, error: TwilioError, attempt: int, delay: float) -> None:
        self.retries.append((attempt, delay))


async def test_retryable_errors_are_retried_with_growing_backoff_until_success() -> None:
    script = Script(_error(ErrorClass.RETRYABLE), _error(ErrorClass.RETRYABLE), _error(ErrorClass.RETRYABLE))
    result = await send_with_retries(
        script.send, RetryPolicy(max_retries=5, base_s=1, cap_s=100), sleep=script.sleep, rand=lambda: 1.0,
        on_retry=script.on_retry,
    )  # fmt: skip
    assert result is OK
    assert script.calls == 4
    assert script.sleeps == [1.0, 2.0, 4.0]
    assert script.retries == [(0, 1.0), (1, 2.0), (2, 4.0)]


async def test_retry_after_from_twilio_sets_the_wait() -> None:
    script = Script(_error(ErrorClass.RETRYABLE, retry_after=7.0))
    await send_with_retries(script.send, RetryPolicy(base_s=0.1), sleep=script.sleep, rand=lambda: 0.5)
    assert script.sleeps == [7.0]


@pytest.mark.parametrize(
    "error_class",
    [ErrorClass.MAY_HAVE_SENT, ErrorClass.PERMANENT, ErrorClass.RECIPIENT, ErrorClass.CONFIGURATION],
)
async def test_only_retryable_errors_are_retried(error_class: ErrorClass) -> None:
    script = Script(_error(error_class))
    with pytest.raises(TwilioError) as caught:
        await send_with_retries(script.send, RetryPolicy(), sleep=script.sleep)
    assert caught.value.error_class is error_class
    assert script.calls == 1
    assert script.sleeps == []


async def test_the_last_error_is_raised_when_the_retry_budget_is_spent() -> None:
    script = Script(*(_error(ErrorClass.RETRYABLE) for _ in range(10)))
    with pytest.raises(TwilioError):
        await send_with_retries(script.send, RetryPolicy(max_retries=2), sleep=script.sleep, rand=lambda: 0.0)
    assert script.calls == 3
    assert len(script.sleeps) == 2
