"""Classify a Twilio failure: what the service should do with it (reference/twilio-api.md).

Pure: an HTTP status and Twilio error code in, a `consumer.errors.ErrorClass` out. Transport
failures (no HTTP answer) are classified at the HTTP edge, in `consumer.twilio.client`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from consumer.errors import ErrorClass

R, M, P, S, C = (
    ErrorClass.RETRYABLE,
    ErrorClass.MAY_HAVE_SENT,
    ErrorClass.PERMANENT,
    ErrorClass.RECIPIENT,
    ErrorClass.CONFIGURATION,
)

#: Codes that mean "slow down": too many requests, a full sender queue, a channel rate limit.
THROTTLE_CODES = frozenset({20429, 21611, 30001, 63018})

#: Codes that say the recipient's number is not one (the message is skipped as `invalid_number`, as
#: when render finds no number: with CONSUMER_PHONE_VALIDATION=possible, Twilio is the judge).
INVALID_NUMBER_CODES = frozenset({21211})

#: Twilio error code -> treatment. The first block is the reference table, code for code.
CODE_CLASSES: Mapping[int, ErrorClass] = MappingProxyType(
    {
        **dict.fromkeys(THROTTLE_CODES, R),  # 20429 concurrency, 21611/30001 queue full, 63018 channel rate
        30003: R,  # unreachable handset (transient)
        30008: R,  # unknown carrier error (transient)
        20003: C,  # authentication failed: wrong key, wrong region, suspended account
        20404: P,  # resource not found (e.g. unknown ContentSid)
        21211: P,  # invalid To
        21614: P,  # To is not a mobile number
        21408: C,  # region not enabled in geo permissions
        21606: C,  # From is not a valid sender for this account
        21610: S,  # recipient replied STOP
        21617: P,  # body over 1600 characters
        21656: P,  # ContentVariables invalid
        30004: P,  # blocked: retrying the same message would be blind
        30007: P,  # filtered as spam: same
        30005: S,  # unknown destination handset
        30006: S,  # landline or unreachable carrier
        63016: P,  # WhatsApp free-form outside the 24 h window: needs a Content Template
        # Beyond the reference table: codes a sender meets often enough to name.
        20001: P,  # invalid parameter (the simulator's generic spec violation)
        20005: C,  # account not active
        20006: C,  # access denied
        20403: C,  # forbidden: the key lacks permission, or the product is not enabled
        21212: C,  # invalid From number
        21602: P,  # message body required
        21603: P,  # From or MessagingServiceSid required
        21604: P,  # To required
        21608: C,  # trial account: To is not verified
        21612: P,  # no route between this From and To
        21619: P,  # Body, MediaUrl or ContentSid required
        21620: P,  # invalid media URL
        21623: P,  # too many media URLs
        35111: P,  # SendAt/ScheduleType invalid
        35118: P,  # scheduling needs a Messaging Service
        63032: S,  # WhatsApp user cannot receive this message
    }
)


def classify(status: int | None, code: int | None) -> ErrorClass:
    """Return how to treat a Twilio error answer with HTTP `status` and Twilio error `code`."""
    if code is not None and code in CODE_CLASSES:
        return CODE_CLASSES[code]
    if status is None:
        return M
    if status in (408, 429):
        # 408: Twilio gave up reading the request; 429: refused before processing. Both safe to repeat.
        return R
    if status >= 500:
        # The request reached Twilio and may have been processed (consumer.pipeline.retry decides).
        return M
    if status in (401, 403):
        return C
    return P


def is_throttle(status: int | None, code: int | None) -> bool:
    """True when Twilio asked us to slow down (HTTP 429 or a throttle code): lower the concurrency."""
    return status == 429 or code in THROTTLE_CODES
