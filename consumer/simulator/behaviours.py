"""How the simulator answers a valid-looking Messages create, deterministically.

Special numbers trigger Twilio's errors, like Twilio's own test credentials
(https://www.twilio.com/docs/iam/test-credentials) - with the same numbers:

| parameter | value | answer |
|---|---|---|
| To | +15005550001 | 21211 invalid To |
| To | +15005550002 | 21612 cannot route to this number |
| To | +15005550003 | 21408 region not enabled (geo permissions) |
| To | +15005550004, or any number on the STOP list | 21610 recipient replied STOP |
| To | +15005550009 | 21614 not a mobile number |
| To | anything that is not E.164, a short code, or whatsapp:/messenger:/rcs: + address | 21211 |
| To | whatsapp:+…63016 (ends in 63016), free-form (no ContentSid) | 63016 outside the 24 h window |
| From | +15005550001 | 21212 invalid From |
| From | +15005550007 | 21606 From is not a sender of this account |
| From | +15005550008 | 21611 sender queue full |
| Body | over 1600 characters | 21617 |
| ContentSid | not in the simulator's templates | 20404 |
| ContentVariables | not a JSON object of strings | 21656 |
| credentials | wrong (unless accept_any_credentials) | 401 / 20003 |

`SimulatorConfig.whatsapp_window_closed` makes every WhatsApp free-form message a 63016.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consumer.simulator.config import SimulatorConfig

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
SHORT_CODE = re.compile(r"^[1-9]\d{4,5}$")
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€\f"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

MAGIC_TO: Mapping[str, tuple[int, str]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number is not currently reachable via SMS."),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}
MAGIC_FROM: Mapping[str, tuple[int, str]] = {
    "+15005550001": (
        21212,
        "The 'From' number +15005550001 is not a valid phone number, shortcode, or alphanumeric sender ID.",
    ),
    "+15005550007": (
        21606,
        "The 'From' phone number provided is not a valid message-capable Twilio phone number "
        "for this destination/account.",
    ),
    "+15005550008": (21611, "This 'From' number has exceeded the maximum number of queued messages."),
}


@dataclass(frozen=True)
class Refusal:
    """A Twilio error answer: HTTP status, code and message."""

    status: int
    code: int
    message: str


def channel_of(address: str) -> str:
    """'whatsapp', 'messenger', 'rcs' from the address prefix, else 'sms'."""
    prefix, sep, _ = address.partition(":")
    return prefix if sep and prefix in ("whatsapp", "messenger", "rcs") else "sms"


def bare(address: str) -> str:
    return address.partition(":")[2] if channel_of(address) != "sms" else address


def sender_kind(params: Mapping[str, str]) -> str:
    """The kind of sender, which sets its queue's drain rate."""
    if params.get("MessagingServiceSid"):
        return "messaging_service"
    sender = params.get("From", "")
    channel = channel_of(sender)
    if channel in ("whatsapp", "messenger"):
        return channel
    number = bare(sender)
    if SHORT_CODE.match(number):
        return "short_code"
    if re.match(r"^\+1(800|833|844|855|866|877|888)\d{7}$", number):
        return "toll_free"
    if E164.match(number):
        return "long_code"
    return "alphanumeric"


def segments(body: str) -> int:
    """SMS segments of `body`: GSM-7 160/153 septets, else UCS-2 70/67 (UTF-16) units."""
    if not body:
        return 1
    if all(c in GSM7 for c in body):
        units = len(body) + sum(1 for c in body if c in GSM7_EXTENDED)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)


def refusal_for(  # noqa: PLR0911  one early answer per Twilio rule reads best as a flat list
    params: Mapping[str, str], config: SimulatorConfig, templates: Mapping[str, Mapping[str, Any]]
) -> Refusal | None:
    """The deterministic error this request earns (special numbers, STOP list, templates), or None."""
    to = params.get("To", "")
    channel = channel_of(to)
    number = bare(to)
    if channel == "messenger":
        valid = bool(number)
    else:
        valid = bool(E164.match(number) or (channel != "whatsapp" and SHORT_CODE.match(number)))
    if not valid:
        return Refusal(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if number in MAGIC_TO:
        code, message = MAGIC_TO[number]
        return Refusal(400, code, message)
    if number in config.stop_list or to in config.stop_list:
        return Refusal(400, 21610, "Attempt to send to unsubscribed recipient")
    sender = bare(params.get("From", ""))
    if sender in MAGIC_FROM:
        code, message = MAGIC_FROM[sender]
        return Refusal(400, code, message)
    if (
        channel == "whatsapp"
        and "MessagingServiceSid" not in params
        and channel_of(params.get("From", "")) != "whatsapp"
    ):
        return Refusal(400, 21910, "Invalid From and To pair. From and To should be of the same channel")
    content_sid = params.get("ContentSid")
    if content_sid and content_sid not in templates:
        return Refusal(404, 20404, f"The requested resource /Content/{content_sid} was not found")
    if (
        channel == "whatsapp"
        and not content_sid
        and (config.whatsapp_window_closed or number.endswith("63016"))
    ):
        return Refusal(
            400,
            63016,
            "Failed to send freeform message because you are outside the allowed window. "
            "If you are using WhatsApp, please use a Message Template.",
        )
    return None
