"""Scheduling through Twilio: `SendAt` for `options.send_at`, and for quiet hours held by Twilio.

Twilio accepts SendAt from 15 minutes to 35 days ahead (Messaging Services only). `options.send_at`
keeps its `margin` (5 s by default: the request's way to Twilio) inside both ends, as Segment checks
the bare window; quiet hours held by Twilio keep a minute (`MIN_SEND_AT`), since they wait longer.
Beyond 35 days `too_far` decides: skip (`send_at_too_far`) or error; under 15 minutes `too_soon`:
skip (`send_at_too_soon`), `send_now` (sent without SendAt) or `error` (RenderError, dead-lettered).
An empty or absent time sends unscheduled, as Segment does, unless `if_missing: error`.
"""

from __future__ import annotations

import datetime as dt

from consumer.mappings.model import Mapping
from consumer.mappings.templating import parse_time
from consumer.pipeline.message import Skip
from consumer.pipeline.scope import invalid, render_field

TWILIO_MIN = dt.timedelta(minutes=15)
TWILIO_MAX = dt.timedelta(days=35)
MIN_SEND_AT = dt.timedelta(minutes=15, seconds=60)
MAX_SEND_AT = dt.timedelta(days=35, seconds=-60)


def schedule_params(when: dt.datetime) -> list[tuple[str, str]]:
    """The form parameters that ask Twilio to send at `when`, to the precision it was given."""
    utc = when.astimezone(dt.UTC)
    micro = utc.microsecond
    fraction = "" if not micro else f".{micro // 1000:03d}" if micro % 1000 == 0 else f".{micro:06d}"
    return [("SendAt", f"{utc:%Y-%m-%dT%H:%M:%S}{fraction}Z"), ("ScheduleType", "fixed")]


def send_at_params(
    mapping: Mapping, scope: dict[str, object], now: dt.datetime
) -> list[tuple[str, str]] | Skip:
    spec = mapping.options.send_at
    if spec is None:
        return []
    # Lenient: an absent field is the same as an empty one, and `if_missing` decides what that means.
    raw = render_field(spec.at, scope, mapping, "options.send_at.at", strict=False).strip()
    if not raw:
        if spec.if_missing == "send_now":
            return []
        raise invalid(mapping, "options.send_at.at", "invalid_send_at", "rendered empty; no time to send at")
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
    margin = dt.timedelta(seconds=spec.margin)
    if ahead > TWILIO_MAX - margin:
        detail = f"send_at is {ahead.days} days ahead; Twilio schedules up to 35"
        if spec.too_far == "error":
            raise invalid(mapping, "options.send_at", "send_at_too_far", detail)
        return Skip(mapping.id, "send_at_too_far", detail)
    if ahead < TWILIO_MIN + margin:
        if spec.too_soon == "send_now":
            return []
        detail = f"send_at is {int(ahead.total_seconds() // 60)} minutes ahead; Twilio needs at least 15"
        if spec.too_soon == "error":
            raise invalid(mapping, "options.send_at", "send_at_too_soon", detail)
        return Skip(mapping.id, "send_at_too_soon", detail)
    return schedule_params(when)
