"""Twilio's webhook posts as Segment track events for the status topic, and the suppression changes
they imply. Pure: the form parameters, the URL's correlation and the time in; data out.

    StatusCallback  (MessageStatus)   -> Message Queued | Sent | Delivered | Undelivered | Failed | Read
    inbound message (OptOutType/Body) -> Message Opted Out (STOP) | Opted In (START) | Received
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consumer import __version__
from consumer.errors import WebhookError
from consumer.events.model import JSON
from consumer.pipeline.correlation import Correlation
from consumer.state.suppression import Change, bare, suppression_key, webhook_scope
from consumer.twilio.codes import error_meaning

STATUS_EVENT_NAMES: Mapping[str, str] = {
    "accepted": "Message Queued", "scheduled": "Message Queued", "queued": "Message Queued",
    "sending": "Message Queued", "sent": "Message Sent", "delivered": "Message Delivered",
    "undelivered": "Message Undelivered", "failed": "Message Failed", "read": "Message Read",
    "canceled": "Message Canceled", "partially_delivered": "Message Delivered",
}  # fmt: skip

#: Twilio's default opt-out keywords (used when the post has no OptOutType: no Advanced Opt-Out).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


@dataclass(frozen=True)
class Produced:
    """What one webhook post becomes: a status event keyed by the message SID, maybe a list change."""

    key: str
    event: dict[str, JSON]
    status: str  # the metric label: a Twilio status, or stop / start / help / received
    error_code: int | None
    change: Change | None


def _required(params: Mapping[str, str], *names: str) -> str:
    for name in names:
        if params.get(name):
            return params[name]
    raise WebhookError(f"the post has no {names[0]}: not a Twilio webhook", field=names[0])


def channel_of(address: str) -> str:
    prefix, sep, _ = address.partition(":")
    return prefix if sep and prefix in ("whatsapp", "messenger", "rcs") else "sms"


def _code(params: Mapping[str, str]) -> int | None:
    raw = params.get("ErrorCode", "")
    return int(raw) if raw.isdigit() and int(raw) != 0 else None


def _envelope(name: str, message_id: str, *, user_id: str, anonymous_id: str, now: str,
              properties: dict[str, JSON]) -> dict[str, JSON]:  # fmt: skip
    return {
        "type": "track", "event": name, "messageId": message_id,
        "userId": user_id or None, "anonymousId": None if user_id else anonymous_id,
        "timestamp": now, "properties": properties,
        "context": {"library": {"name": "kafka-twilio", "version": __version__}},
    }  # fmt: skip


def status_event(params: Mapping[str, str], corr: Correlation, now: str, codes: frozenset[int]) -> Produced:
    """The event for one StatusCallback post; `codes` are the error codes that suppress."""
    sid = _required(params, "MessageSid", "SmsSid")
    status = _required(params, "MessageStatus", "SmsStatus").lower()
    to, sender = params.get("To", ""), params.get("From", "")
    service = params.get("MessagingServiceSid", "")
    code = _code(params)
    properties: dict[str, JSON] = {
        "message_sid": sid, "status": status, "error_code": code, "error_message": error_meaning(code),
        "mapping_id": corr.mapping_id or None, "original_message_id": corr.message_id or None,
        "channel": corr.channel or channel_of(to), "from": sender, "to": to, "phone": bare(to),
        "messaging_service_sid": service or None, "fallback_depth": corr.depth,
        "event_timestamp": corr.event_time or None,
    }  # fmt: skip
    name = STATUS_EVENT_NAMES.get(status, "Message Queued")
    change = None
    if status in ("undelivered", "failed") and code in codes and to:
        change = Change(suppression_key(webhook_scope(service, sender), to), f"twilio_{code}")
    event = _envelope(
        name, f"{sid}:{status}", user_id=corr.user_id, anonymous_id=sid, now=now, properties=properties
    )
    return Produced(sid, event, status, code, change)


def opt_out_kind(params: Mapping[str, str]) -> str:
    """stop, start, help or received: Twilio's OptOutType when present, else its default keywords."""
    kind = params.get("OptOutType", "").strip().upper()
    if not kind:
        word = params.get("Body", "").strip().upper()
        kind = "STOP" if word in STOP_WORDS else "START" if word in START_WORDS else ""
        kind = kind or ("HELP" if word in HELP_WORDS else "")
    return {"STOP": "stop", "START": "start", "HELP": "help"}.get(kind, "received")


def inbound_event(params: Mapping[str, str], now: str) -> Produced:
    """The event for one inbound message (a reply): an opt-out, an opt-in, or a message received."""
    sid = _required(params, "MessageSid", "SmsSid")
    sender = _required(params, "From")  # the recipient of our messages, replying
    ours = params.get("To", "")
    service = params.get("MessagingServiceSid", "")
    kind = opt_out_kind(params)
    name = {"stop": "Message Opted Out", "start": "Message Opted In"}.get(kind, "Message Received")
    key = suppression_key(webhook_scope(service, ours), sender)
    change = Change(key, "stop") if kind == "stop" else Change(key, None) if kind == "start" else None
    properties: dict[str, JSON] = {
        "message_sid": sid, "status": kind, "channel": channel_of(sender), "from": sender, "to": ours,
        "phone": bare(sender), "messaging_service_sid": service or None, "body": params.get("Body", ""),
        "opt_out_type": kind if kind != "received" else None, "fallback_depth": 0,
    }  # fmt: skip
    event = _envelope(name, f"{sid}:{kind}", user_id="", anonymous_id=sid, now=now, properties=properties)
    return Produced(sid, event, kind, None, change)
