"""Twilio's error answers: a non-2xx response becomes a classified `TwilioError` with its code,
message, more_info and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from consumer.errors import ErrorClass, TwilioError
from consumer.twilio.classify import classify

HINTS = {
    ErrorClass.RETRYABLE: "retry later with backoff",
    ErrorClass.MAY_HAVE_SENT: "the message may have been sent: check the Twilio logs before resending",
    ErrorClass.PERMANENT: "this message will not succeed as sent: fix the mapping or the event",
    ErrorClass.RECIPIENT: "do not message this recipient again",
    ErrorClass.CONFIGURATION: "fix the Twilio settings (credentials, region, sender) before sending more",
}


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def error_from_response(response: httpx.Response, *, what: str) -> TwilioError:
    """Build the TwilioError for a non-2xx answer, parsing Twilio's JSON error body when present."""
    code: int | None = None
    message, more_info = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw_code = body.get("code")
        code = raw_code if isinstance(raw_code, int) else None
        message = str(body.get("message") or "")
        more_info = str(body.get("more_info") or "")
    if not message:
        message = response.text[:200].strip() or response.reason_phrase
    error_class = classify(response.status_code, code)
    label = f"code {code}" if code is not None else "no Twilio code"
    return TwilioError(
        f"{what}: Twilio answered HTTP {response.status_code} ({label}): {message}; {HINTS[error_class]}",
        error_class=error_class,
        code=code,
        status=response.status_code,
        more_info=more_info,
        retry_after_s=parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC)),
    )
