"""Retry policy: full-jitter exponential backoff that honours Retry-After, and a per-record retry loop.

`compute_backoff` is pure (the random draw is passed in). `send_with_retries` retries one record's
send only while the failure is RETRYABLE: a MAY_HAVE_SENT failure (read timeout, 5xx) is returned
to the caller, because repeating it could send the message twice (Twilio has no idempotency key).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from consumer.errors import ErrorClass, TwilioError

if TYPE_CHECKING:
    from consumer.twilio.client import SendResult


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait: attempt n waits up to min(cap, base * 2**n)."""

    max_retries: int = 6
    base_s: float = 0.5
    cap_s: float = 60.0


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


async def send_with_retries(
    send: Callable[[], Awaitable[SendResult]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: Callable[[TwilioError, int, float], None] | None = None,
) -> SendResult:
    """Call `send` until it succeeds, fails other than RETRYABLE, or `policy.max_retries` is spent.

    Raises the last TwilioError. `on_retry(error, attempt, delay_s)` is called before each wait.
    """
    attempt = 0
    while True:
        try:
            return await send()
        except TwilioError as error:
            if error.error_class is not ErrorClass.RETRYABLE or attempt >= policy.max_retries:
                raise
            delay = compute_backoff(
                attempt,
                base_s=policy.base_s,
                cap_s=policy.cap_s,
                rand=rand(),
                retry_after_s=error.retry_after_s,
            )
            if on_retry is not None:
                on_retry(error, attempt, delay)
            await sleep(delay)
            attempt += 1
