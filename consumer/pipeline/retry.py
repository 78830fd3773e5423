"""The retry policy: after a failed send attempt, retry after a delay, dead-letter, or halt.

Pure: the error, the attempt number and a random draw in, a decision out. The send path
(`consumer.service.delivery`) is its one caller, so what is retried is decided here and only here:

- RETRYABLE (429/20429, queue full, no connection): the request was not processed; retry with
  full-jitter backoff that honours Retry-After, until `max_retries`, then dead-letter
  `retries_exhausted`. A throttle (429, 20429, 21611, 30001, 63018) never spends the budget: it says
  nothing about the message, only about our pace, which the adaptive limit lowers meanwhile.
- MAY_HAVE_SENT (a 5xx, a read timeout or a dropped connection after the request was written): the
  send path first asks Twilio whether the message exists (`consumer.pipeline.reconcile`); only a
  message Twilio does not have is decided here, as `not_sent(error)`: retried. Decided without that
  answer, a 5xx is retried and a failure without an HTTP answer is dead-lettered `ambiguous`.
- CONFIGURATION (credentials, region, sender): halt all sending until a credential check passes.
- 21211 (invalid To): skipped as `invalid_number`, the same outcome as a number render rejects.
- PERMANENT and RECIPIENT: dead-lettered with the Twilio code as the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.errors import ErrorClass, TwilioError
from consumer.settings import ServiceSettings
from consumer.twilio.classify import INVALID_NUMBER_CODES, is_throttle


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait: attempt n waits up to min(cap, base * 2**n)."""

    max_retries: int
    base_s: float
    cap_s: float

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> RetryPolicy:
        return cls(settings.max_retries, settings.retry_base_s, settings.retry_cap_s)


@dataclass(frozen=True)
class Retry:
    """Try the same request again after `delay_s`."""

    delay_s: float
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    """Give up on this message: dead-letter it with `reason`."""

    reason: str


@dataclass(frozen=True)
class Halt:
    """Stop all sending until the configuration is fixed; then try the same request again."""

    reason: str


@dataclass(frozen=True)
class Skipped:
    """Nothing is wrong with the message, only with its recipient: skip it with `reason`."""

    reason: str


Decision = Retry | DeadLetter | Halt | Skipped


def compute_backoff(
    attempt: int, *, base_s: float, cap_s: float, rand: float, retry_after_s: float | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (0-based).

    Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)], so clients that
    failed together do not retry together. `rand` is a draw in [0, 1). A server's Retry-After is a
    floor: waiting less would only earn another 429.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, 62))
    delay = ceiling * min(max(rand, 0.0), 1.0)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def reason_of(error: TwilioError) -> str:
    """The bounded label of a failure: `twilio_<code>`, `http_<status>`, `connection` or `ambiguous`."""
    if error.code:
        return f"twilio_{error.code}"
    if error.status is None:
        return "ambiguous" if error.error_class is ErrorClass.MAY_HAVE_SENT else "connection"
    return f"http_{error.status}"


def not_sent(error: TwilioError) -> TwilioError:
    """`error` once Twilio's own list showed the message was not created: safe to send again."""
    return TwilioError(error.message, error_class=ErrorClass.RETRYABLE, code=error.code, status=error.status,
                       retry_after_s=error.retry_after_s)  # fmt: skip


def decide(error: TwilioError, attempt: int, policy: RetryPolicy, rand: float) -> Decision:
    """What to do after attempt number `attempt` (0-based) failed with `error`."""
    cls = error.error_class
    reason = reason_of(error)
    if cls is ErrorClass.CONFIGURATION:
        return Halt(reason)
    if error.code in INVALID_NUMBER_CODES:
        return Skipped("invalid_number")
    answered_5xx = cls is ErrorClass.MAY_HAVE_SENT and error.status is not None
    if cls is not ErrorClass.RETRYABLE and not answered_5xx:
        return DeadLetter(reason)
    throttled = cls is ErrorClass.RETRYABLE and is_throttle(error.status, error.code)
    if attempt >= policy.max_retries and not throttled:
        return DeadLetter("retries_exhausted")
    # A throttle's attempts go on past the budget; the exponent stops growing long before that matters.
    exponent = min(attempt, 30)
    delay = compute_backoff(
        exponent, base_s=policy.base_s, cap_s=policy.cap_s, rand=rand, retry_after_s=error.retry_after_s
    )
    return Retry(delay, reason)
