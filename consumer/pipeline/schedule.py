"""Scheduling through Twilio: `SendAt` for `options.send_at`, and for quiet hours held by Twilio.

Twilio accepts SendAt from 15 minutes to 35 days ahead (Messaging Services only). A minute of margin
is kept on both ends for the time the request spends reaching Twilio. Beyond 35 days the message is
skipped (`send_at_too_far`); under 15 minutes `too_soon` decides: skip (`send_at_too_soon`),
`send_now` (sent without SendAt) or `error` (RenderError, dead-lettered).
"""

from __future__ import annotations

import datetime as dt

from consumer.mappings.model import Mapping
from consumer.mappings.templating import parse_time
from consumer.pipeline.message import Skip
from consumer.pipeline.scope import invalid, render_field

MIN_SEND_AT = dt.timedelta(minutes=15, seconds=60)
MAX_SEND_AT = dt.timedelta(days=35, seconds=-60)


def schedule_params(when: dt.datetime) -> list[tuple[str, str]]:
    """The form parameters that ask Twilio to send at `when`."""
    return [("SendAt", when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")), ("ScheduleType", "fixed")]


def send_at_params(
    mapping: Mapping, scope: dict[str, object], now: dt.datetime
) -> list[tuple[str, str]] | Skip:
    spec = mapping.options.send_at
    if spec is None:
        return []
    raw = render_field(spec.at, scope, mapping, "options.send_at.at").strip()
    when = parse_time(raw, now)
    if when is None:
        raise invalid(
            mapping, "options.send_at.at", "invalid_send_at", f"{raw[:40]!r} is not an ISO-8601 time"
        )
    try:
        when += dt.timedelta(seconds=spec.offset)
        ahead = when - now
    except OverflowError:
        raise invalid(
            mapping, "options.send_at.at", "invalid_send_at", f"{raw[:40]!r} plus the offset is out of range"
        ) from None
    if ahead > MAX_SEND_AT:
        return Skip(
            mapping.id, "send_at_too_far", f"send_at is {ahead.days} days ahead; Twilio schedules up to 35"
        )
    if ahead < MIN_SEND_AT:
        if spec.too_soon == "send_now":
            return []
        detail = f"send_at is {int(ahead.total_seconds() // 60)} minutes ahead; Twilio needs at least 15"
        if spec.too_soon == "error":
            raise invalid(mapping, "options.send_at", "send_at_too_soon", detail)
        return Skip(mapping.id, "send_at_too_soon", detail)
    return schedule_params(when)
