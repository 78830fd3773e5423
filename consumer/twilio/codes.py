"""What Twilio's delivery error codes mean, for status events and dashboards (reference/twilio-api.md).

Only the codes a status callback or a send commonly carries; an unknown code is named by its number.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

ERROR_MEANINGS: Mapping[int, str] = MappingProxyType(
    {
        21610: "recipient replied STOP (unsubscribed)",
        21611: "sender queue full",
        21614: "To is not a mobile number",
        30001: "queue overflow",
        30002: "account suspended",
        30003: "unreachable destination handset",
        30004: "message blocked",
        30005: "unknown destination handset",
        30006: "landline or unreachable carrier",
        30007: "message filtered by the carrier",
        30008: "unknown error",
        30009: "missing inbound segment",
        30010: "message price exceeds max price",
        30034: "US A2P 10DLC: message from an unregistered number",
        63003: "WhatsApp: the channel could not find the recipient",
        63016: "WhatsApp: outside the 24-hour window (use a template)",
        63024: "WhatsApp: invalid message recipient",
        63032: "WhatsApp: the user has opted out of marketing messages",
    }
)


def error_meaning(code: int | None) -> str:
    """A short description of a Twilio error code ("" for none)."""
    if code is None:
        return ""
    return ERROR_MEANINGS.get(code, f"Twilio error {code}")
