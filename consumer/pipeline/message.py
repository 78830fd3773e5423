"""The values that cross from render to the send path: the outbound message, or a reason not to send."""

from __future__ import annotations

import dataclasses

from consumer.events.recipients import Channel
from consumer.mappings.model import QuietHours

Params = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class FrequencyCap:
    """At most `limit` messages per recipient per `window_s`, counted under `scope`."""

    limit: int
    window_s: float
    scope: str


@dataclasses.dataclass(frozen=True)
class OutboundMessage:
    """A message ready for the gate and the sender."""

    mapping_id: str
    channel: Channel
    to: str  # exactly as sent in To
    recipient: str  # normalised address: key for ordering, dedup, caps
    sender: str  # From or MessagingServiceSid value
    sender_kind: str
    params: tuple[tuple[str, str], ...]  # the exact Twilio form parameters, MediaUrl repeated
    segments: int
    dedup_key: str  # "" when de-duplication is off
    dedup_window_s: float
    timezone: str | None
    quiet_hours: QuietHours | None
    frequency_cap: FrequencyCap | None


@dataclasses.dataclass(frozen=True)
class Skip:
    """A deliberate decision not to send, with a bounded `reason` label."""

    mapping_id: str
    reason: str
    detail: str  # human text; never a raw phone number


def has_param(params: Params, name: str) -> bool:
    return any(k == name for k, _ in params)
