"""Twilio's rules for a Messages create request that the OpenAPI spec does not express.

The spec marks only `To` as required and leaves the rest to a vendor extension
(`x-twilio.conditional`: one of From/MessagingServiceSid, one of Body/MediaUrl/ContentSid) and to
prose. These are checked here, purely, for both the simulator and the contract tests.

Codes are Twilio's where Twilio documents one for the rule; `INVALID_PARAMETER` is the simulator's
generic code for a request that breaks the spec's own schema or an undocumented rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

INVALID_PARAMETER = 20001
MAX_BODY_CHARS = 1600
MAX_MEDIA_URLS = 10
MAX_TAGS = 10
MAX_VALIDITY_PERIOD_S = 36000

#: Form keys the spec declares as arrays (one repeated key per value); every other key appears once.
REPEATABLE = frozenset({"MediaUrl", "PersistentAction"})
_FALLBACK_SENDER = re.compile(r"^\+[1-9]\d{1,14}$|^[1-9]\d{4,5}$|^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


@dataclass(frozen=True)
class Problem:
    """One broken rule: the Twilio error code it earns, the field, and what to fix."""

    code: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} (Twilio {self.code})"


def message_problems(params: Sequence[tuple[str, str]]) -> list[Problem]:
    """Return every conditional-rule violation of a Messages create form, in a stable order."""
    seen: dict[str, list[str]] = {}
    for key, value in params:
        seen.setdefault(key, []).append(value)
    problems = [
        Problem(INVALID_PARAMETER, key, f"sent {len(values)} times; send it once")
        for key, values in seen.items()
        if len(values) > 1 and key not in REPEATABLE
    ]
    return problems + _required(seen) + _content(seen) + _options(seen)


def _one(seen: dict[str, list[str]], key: str) -> str | None:
    values = seen.get(key)
    return values[0] if values else None


def _required(seen: dict[str, list[str]]) -> list[Problem]:
    found = []
    if not _one(seen, "To"):
        found.append(Problem(21604, "To", "a 'To' phone number is required"))
    if not _one(seen, "From") and not _one(seen, "MessagingServiceSid"):
        found.append(Problem(21603, "From", "a 'From' or 'MessagingServiceSid' parameter is required"))
    if not _one(seen, "Body") and not seen.get("MediaUrl") and not _one(seen, "ContentSid"):
        found.append(Problem(21619, "Body", "a Body, a MediaUrl or a ContentSid is required"))
    return found


def _content(seen: dict[str, list[str]]) -> list[Problem]:
    found = []
    body = _one(seen, "Body")
    if body is not None and len(body) > MAX_BODY_CHARS:
        found.append(
            Problem(21617, "Body", f"{len(body)} characters; the limit is {MAX_BODY_CHARS} (shorten it)")
        )
    media = seen.get("MediaUrl", [])
    if len(media) > MAX_MEDIA_URLS:
        found.append(Problem(21623, "MediaUrl", f"{len(media)} URLs; at most {MAX_MEDIA_URLS} are allowed"))
    variables = _one(seen, "ContentVariables")
    if variables is not None:
        problem = _json_object_of_strings(variables)
        if problem:
            found.append(Problem(21656, "ContentVariables", problem))
        if not _one(seen, "ContentSid"):
            found.append(Problem(INVALID_PARAMETER, "ContentVariables", "sent without a ContentSid"))
    return found


def _options(seen: dict[str, list[str]]) -> list[Problem]:
    found = []
    tags = _one(seen, "Tags")
    if tags is not None:
        problem = _json_object_of_strings(tags)
        if problem:
            found.append(Problem(INVALID_PARAMETER, "Tags", problem))
        elif len(json.loads(tags)) > MAX_TAGS:
            found.append(Problem(INVALID_PARAMETER, "Tags", f"more than {MAX_TAGS} tags"))
    validity = _one(seen, "ValidityPeriod")
    if validity is not None and (not validity.isdigit() or not 1 <= int(validity) <= MAX_VALIDITY_PERIOD_S):
        found.append(
            Problem(INVALID_PARAMETER, "ValidityPeriod", f"must be 1..{MAX_VALIDITY_PERIOD_S} seconds")
        )
    schedule_type, send_at, service = (
        _one(seen, "ScheduleType"),
        _one(seen, "SendAt"),
        _one(seen, "MessagingServiceSid"),
    )
    if (schedule_type is None) != (send_at is None):
        found.append(Problem(35111, "ScheduleType", "SendAt and ScheduleType=fixed go together"))
    if schedule_type is not None and not service:
        found.append(Problem(35118, "MessagingServiceSid", "scheduling needs a MessagingServiceSid"))
    if _one(seen, "ShortenUrls") == "true" and not service:
        found.append(Problem(INVALID_PARAMETER, "ShortenUrls", "link shortening needs a MessagingServiceSid"))
    return found + _fallback(seen, service)


def _fallback(seen: dict[str, list[str]], service: str | None) -> list[Problem]:
    """FallbackFrom as the spec's prose allows it: with a Messaging Service holding an RCS sender, as an
    E.164 number, short code or alphanumeric ID, and not to an `rcs:` address (which has no fallback).
    The spec names no code for these, so they earn the generic one."""
    fallback = _one(seen, "FallbackFrom")
    if fallback is None:
        return []
    found = []
    if not service:
        found.append(
            Problem(INVALID_PARAMETER, "FallbackFrom", "a fallback sender needs a MessagingServiceSid")
        )
    if (_one(seen, "To") or "").startswith("rcs:"):
        found.append(Problem(INVALID_PARAMETER, "FallbackFrom", "an rcs: address asks for no fallback"))
    if not _FALLBACK_SENDER.fullmatch(fallback):
        found.append(
            Problem(
                INVALID_PARAMETER, "FallbackFrom", "give an E.164 number, a short code or an alphanumeric ID"
            )
        )
    return found


def _json_object_of_strings(text: str) -> str:
    """Return why `text` is not a JSON object whose values are all strings, or "" when it is."""
    try:
        value = json.loads(text)
    except ValueError:
        return "is not valid JSON"
    if not isinstance(value, dict):
        return "must be a JSON object"
    bad = sorted(k for k, v in value.items() if not isinstance(v, str))
    if bad:
        return f"values must be strings (not for {', '.join(bad)})"
    return ""
