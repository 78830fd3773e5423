"""The one retry policy: backoff arithmetic and the decision after each failed attempt."""

from __future__ import annotations

import pytest

from consumer.errors import ErrorClass, TwilioError
from consumer.pipeline.retry import DeadLetter, Halt, Retry, RetryPolicy, Skipped, compute_backoff, decide
from consumer.settings import ServiceSettings

POLICY = RetryPolicy(max_retries=3, base_s=1.0, cap_s=100.0)


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


def error(
    cls: ErrorClass, code: int | None = None, status: int | None = 400, retry_after: float | None = None
) -> TwilioError:
    return TwilioError("boom", error_class=cls, code=code, status=status, retry_after_s=retry_after)


R, M, P, S, C = (ErrorClass.RETRYABLE, ErrorClass.MAY_HAVE_SENT, ErrorClass.PERMANENT, ErrorClass.RECIPIENT,
                 ErrorClass.CONFIGURATION)  # fmt: skip


@pytest.mark.parametrize(
    ("failure", "attempt", "expected"),
    [
        (error(R, 20429, 429), 0, Retry(0.5, "twilio_20429")),
        (error(R, 20429, 429), 2, Retry(2.0, "twilio_20429")),
        (error(R, 20429, 429), 3, Retry(4.0, "twilio_20429")),  # a throttle never spends the budget
        (error(R, 21611, 400), 9, Retry(50.0, "twilio_21611")),
        (error(R, 30003, 400), 3, DeadLetter("retries_exhausted")),
        (error(R, None, None), 0, Retry(0.5, "connection")),  # refused: never written
        (error(M, None, 503), 1, Retry(1.0, "http_503")),  # Twilio 5xx: retried, as Twilio advises
        (error(M, None, 503), 3, DeadLetter("retries_exhausted")),
        (error(M, None, None), 0, DeadLetter("ambiguous")),  # read timeout: never repeated blindly
        (error(P, 21211), 0, Skipped("invalid_number")),  # Twilio judged the number: as render would
        (error(P, 21617), 0, DeadLetter("twilio_21617")),
        (error(S, 21610), 0, DeadLetter("twilio_21610")),
        (error(C, 20003, 401), 0, Halt("twilio_20003")),
        (error(C, 20003, 401), 99, Halt("twilio_20003")),  # a halt is never a spent budget
    ],
)
def test_each_failure_is_retried_dead_lettered_or_halts_by_its_class_and_the_budget(
    failure: TwilioError, attempt: int, expected: object
) -> None:
    assert decide(failure, attempt, POLICY, rand=0.5) == expected


def test_retry_after_from_twilio_is_the_floor_of_the_wait() -> None:
    assert decide(error(R, 20429, 429, retry_after=7.0), 0, POLICY, rand=0.5) == Retry(7.0, "twilio_20429")


def test_the_policy_is_the_settings_one() -> None:
    settings = ServiceSettings(max_retries=2, retry_base_s=0.25, retry_cap_s=9)
    assert RetryPolicy.from_settings(settings) == RetryPolicy(max_retries=2, base_s=0.25, cap_s=9)
