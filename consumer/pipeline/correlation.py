"""Correlation through the StatusCallback URL: which mapping and which event a status is about.

Twilio signs the whole callback URL, query included, so what the service appends cannot be forged by
whoever posts to the receiver. Only identifiers go there (mapping id, the event's messageId and userId,
the channel, the event's timestamp, the fallback depth): never a phone number or content.

`depth` counts fallbacks: 0 for a message an ordinary event caused, d + 1 for a message caused by a
status event about a message of depth d. A status event of depth d fires a mapping only when the
mapping allows that depth (`trigger.max_fallback_depth`, default 0), so a fallback cannot loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from consumer.events.model import Event
from consumer.mappings.model import Mapping

MAPPING, MESSAGE_ID, USER_ID, CHANNEL, EVENT_TIME, DEPTH = (
    "kt_mapping", "kt_message", "kt_user", "kt_channel", "kt_ts", "kt_depth"
)  # fmt: skip
PARAMS = (MAPPING, MESSAGE_ID, USER_ID, CHANNEL, EVENT_TIME, DEPTH)

#: The track events the receiver writes to the status topic (consumer.webhooks.status).
STATUS_EVENTS = frozenset({
    "Message Queued", "Message Sent", "Message Delivered", "Message Undelivered", "Message Failed",
    "Message Read", "Message Canceled", "Message Opted Out", "Message Opted In", "Message Received",
})  # fmt: skip


@dataclass(frozen=True)
class Correlation:
    """What the callback URL says about the message a status is for ("" where it says nothing)."""

    mapping_id: str = ""
    message_id: str = ""
    user_id: str = ""
    channel: str = ""
    event_time: str = ""
    depth: int = 0


def event_depth(event: Event) -> int:
    """The fallback depth of the message that `event` reports on (0 for an ordinary event)."""
    if event.event not in STATUS_EVENTS:
        return 0
    raw = event.properties.get("fallback_depth")
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else 0


def may_fire(event: Event, max_depth: int) -> bool:
    """Whether a mapping allowing fallbacks `max_depth` deep may fire for `event` (the loop guard)."""
    return event_depth(event) <= max_depth


def callback_url(base: str, mapping_id: str, channel: str, event: Event) -> str:
    """`base` with the correlation parameters of a message `mapping_id` sends for `event`."""
    parts = urlsplit(base)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in PARAMS]
    status = event.event in STATUS_EVENTS
    depth = event_depth(event) + 1 if status else 0
    # A fallback keeps the original event's messageId: its statuses join the same chain.
    original = event.properties.get("original_message_id") if status else None
    message_id = original if isinstance(original, str) and original else event.message_id
    added = [(MAPPING, mapping_id), (MESSAGE_ID, message_id), (USER_ID, event.user_id or ""),
             (CHANNEL, channel), (EVENT_TIME, event.timestamp or ""), (DEPTH, str(depth))]  # fmt: skip
    query = urlencode([*kept, *((k, v) for k, v in added if v)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def correlation(query: dict[str, str]) -> Correlation:
    """The correlation a (signed) callback URL's query carries."""
    raw_depth = query.get(DEPTH, "0")
    return Correlation(
        mapping_id=query.get(MAPPING, ""), message_id=query.get(MESSAGE_ID, ""),
        user_id=query.get(USER_ID, ""), channel=query.get(CHANNEL, ""),
        event_time=query.get(EVENT_TIME, ""), depth=int(raw_depth) if raw_depth.isdigit() else 0,
    )  # fmt: skip


class _CallbackSetting(Protocol):
    status_callback_url: str


def with_default_callback(
    mappings: tuple[Mapping, ...], settings: _CallbackSetting | str
) -> tuple[Mapping, ...]:
    """`mappings`, those without a StatusCallback of their own given CONSUMER_STATUS_CALLBACK_URL
    (the service settings' `status_callback_url`, or the URL itself)."""
    url = settings if isinstance(settings, str) else settings.status_callback_url
    if not url:
        return mappings
    return tuple(
        m if m.options.status_callback else
        m.model_copy(update={"options": m.options.model_copy(update={"status_callback": url})})
        for m in mappings
    )  # fmt: skip
