"""Reconciliation: is the message we may have sent already at Twilio? Pure matching over a listing.

Twilio's Messages list (filtered by To, and by From for a phone-number sender) is the only record of
what it accepted: the API has no idempotency key and a Message resource carries none of our own data
back. A listed message is this request when it went to the same address, from the same sender (the
Messaging Service SID for a service: its `from` is the pool number it picked), with the same content
where Twilio shows it (`body` for an inline body, unless ShortenUrls or SmartEncoded rewrote it; a
Content Template's rendered text cannot be compared), the same number of media, and was created at or
after the intent (less a small clock skew). Identical messages are matched by count: the oldest
unattributed candidate is taken, and SIDs already attributed to other sends are skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from consumer.pipeline.message import Params

#: Twilio's date_created has a second's resolution and its clock is not ours.
SKEW = timedelta(seconds=2)


def _created(listed: Mapping[str, Any]) -> datetime | None:
    try:
        return parsedate_to_datetime(str(listed.get("date_created") or ""))
    except (TypeError, ValueError):
        return None


def is_this_request(listed: Mapping[str, Any], params: Params) -> bool:
    """True when the listed message matches the request on everything Twilio shows of it."""
    first: dict[str, str] = {}
    for key, value in params:
        first.setdefault(key, value)
    if listed.get("to") != first.get("To"):
        return False
    service = first.get("MessagingServiceSid")
    if service is not None and listed.get("messaging_service_sid") != service:
        return False
    if service is None and listed.get("from") != first.get("From"):
        return False
    rewritten = first.get("ShortenUrls") == "true" or first.get("SmartEncoded") == "true"
    if (
        "Body" in first
        and "ContentSid" not in first
        and not rewritten
        and listed.get("body") != first["Body"]
    ):
        return False
    media = sum(1 for k, _ in params if k == "MediaUrl")
    return int(str(listed.get("num_media") or 0) or 0) == media


def find_sent(
    listing: Sequence[Mapping[str, Any]], params: Params, since: datetime, attributed: Collection[str]
) -> Mapping[str, Any] | None:
    """The oldest listed message that is this request, created at or after `since` (less the skew),
    whose SID no other send has claimed; None when Twilio has no such message."""
    candidates = []
    for listed in listing:
        created = _created(listed)
        if created is None or created < since - SKEW or str(listed.get("sid")) in attributed:
            continue
        if is_this_request(listed, params):
            candidates.append((created, str(listed.get("sid")), listed))
    return min(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None
