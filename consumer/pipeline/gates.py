"""The gates between render and send, as pure verdicts: consent, quiet hours, frequency caps.

Consent depends only on the event, so render applies it. Quiet hours depend on the time of sending and
frequency caps on what was sent before: the send path applies them with its clock and its state
(`consumer.state`), and `preview --now` shows the same verdicts for a given time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from consumer.events.recipients import Consent
from consumer.pipeline.message import OutboundMessage, Skip, has_param
from consumer.pipeline.schedule import MIN_SEND_AT
from consumer.state.caps import FrequencyCaps, cap_key
from consumer.state.ledger import recipient_hash
from consumer.zones import zone_or_default

_CONSENT_SKIPS = {
    "require_subscribed": {Consent.UNSUBSCRIBED, Consent.UNKNOWN, Consent.OTHER},
    "allow_unknown": {Consent.UNSUBSCRIBED, Consent.OTHER},
    "ignore": set(),
}
_CONSENT_REASONS = {Consent.UNSUBSCRIBED: "unsubscribed", Consent.UNKNOWN: "consent_unknown",
                    Consent.OTHER: "not_subscribed"}  # fmt: skip


def consent_skip(mapping_id: str, consent: Consent, policy: str) -> Skip | None:
    """The skip a mapping's consent `policy` demands for a recipient in state `consent`, if any."""
    if consent not in _CONSENT_SKIPS[policy]:
        return None
    return Skip(mapping_id, _CONSENT_REASONS[consent], f"consent is {consent} and the policy is {policy}")


def quiet_until(now: datetime, tz: ZoneInfo, start: time, end: time) -> datetime | None:
    """When `now` falls in the quiet period [start, end) local time, return its end (UTC); else None.

    A period whose start is after its end wraps midnight (21:00-08:00), the usual case.
    """
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if start == end:
        return None
    wraps = start > end
    inside = (t >= start or t < end) if wraps else (start <= t < end)
    if not inside:
        return None
    end_day = local.date()
    if wraps and t >= start:
        end_day += timedelta(days=1)
    # Build the wall-clock end in the zone; fold=0 picks the first of ambiguous DST times.
    local_end = datetime.combine(end_day, end, tzinfo=tz)
    return local_end.astimezone(UTC)


@dataclass(frozen=True)
class Quiet:
    """Now is inside the recipient's quiet hours, which end at `until`.

    `drop`: the mapping drops such messages. Otherwise the message is held: by Twilio when `schedule`
    (a Messaging Service can take SendAt, and the end is far enough ahead for it), else in memory.
    """

    until: datetime
    drop: bool
    schedule: bool


def quiet_hours(message: OutboundMessage, now: datetime) -> Quiet | None:
    """The quiet-hours verdict for sending `message` at `now`: None when it may go now."""
    qh = message.quiet_hours
    if qh is None:
        return None
    until = quiet_until(now, zone_or_default(message.timezone, qh.default_timezone), qh.start, qh.end)
    if until is None:
        return None
    schedule = (
        message.sender_kind == "messaging_service"
        and until - now >= MIN_SEND_AT
        and not has_param(message.params, "SendAt")
    )
    return Quiet(until, qh.action == "drop", schedule)


def frequency_key(message: OutboundMessage) -> str:
    """The cap counter `message` counts against ("" when its mapping has no cap)."""
    cap = message.frequency_cap
    return cap_key(cap.scope or message.mapping_id, recipient_hash(message.recipient)) if cap else ""


def capped(message: OutboundMessage, caps: FrequencyCaps, now: float) -> bool:
    """True when sending `message` now would exceed its frequency cap."""
    cap = message.frequency_cap
    return cap is not None and not caps.allows(frequency_key(message), cap.limit, cap.window_s, now)
