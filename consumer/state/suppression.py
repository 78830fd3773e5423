"""The suppression list: who must not be messaged from which sender, as a table keyed like its topic.

Twilio keeps opt-outs per Messaging Service, or per sender number when no service is used, and a
WhatsApp sender is its own scope. So an entry is keyed by (scope, recipient): the scope is the
Messaging Service SID or the sender address with its channel prefix (`whatsapp:+1…`), the recipient a
hash of the bare number (the topic holds no phone numbers). The compacted topic is the source of truth
(consumer.state.suppression_topic); a tombstone (START) removes the entry.

Pure: keys, the entry codec and the table; no Kafka, no clock (the time is passed in).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from consumer.pipeline.message import OutboundMessage

from consumer.state.ledger import recipient_hash

#: Twilio error codes that put a recipient on the list by default (CONSUMER_SUPPRESSION_CODES).
DEFAULT_CODES = (21610, 30005, 30006)
_PREFIXES = ("whatsapp:", "messenger:", "rcs:")


def bare(address: str) -> str:
    """The address without its channel prefix: `whatsapp:+1415…` -> `+1415…`."""
    for prefix in _PREFIXES:
        if address.startswith(prefix):
            return address[len(prefix) :]
    return address


def outbound_scope(sender: str, sender_kind: str) -> str:
    """The opt-out scope of a message sent from `sender` (an OutboundMessage's sender and its kind)."""
    if sender_kind == "whatsapp":
        return f"whatsapp:{sender}"
    if sender_kind == "messenger":
        return f"messenger:{sender}"
    return sender


def webhook_scope(messaging_service_sid: str, our_address: str) -> str:
    """The opt-out scope of a webhook: its Messaging Service, else our number (with its prefix)."""
    return messaging_service_sid or our_address


def suppression_key(scope: str, recipient: str) -> str:
    """The table's (and the topic's) key for `recipient` in `scope`."""
    return f"{scope}|{recipient_hash(bare(recipient))}"


@dataclass(frozen=True)
class Change:
    """Put `key` on the list for `reason` (`stop`, `twilio_21610`, …), or take it off (`reason` None)."""

    key: str
    reason: str | None
    at: float = 0.0

    def value(self) -> bytes | None:
        """The record value: JSON for an entry, None (a tombstone) for a removal."""
        if self.reason is None:
            return None
        return json.dumps({"reason": self.reason, "at": round(self.at, 3)}, separators=(",", ":")).encode()


def decode_change(key: bytes | None, value: bytes | None) -> Change | None:
    """The change a topic record holds; None for a record that is not one (skipped, never fatal)."""
    if key is None:
        return None
    try:
        text = key.decode()
        if value is None:
            return Change(text, None)
        data = json.loads(value)
        return Change(text, str(data["reason"]), float(data.get("at", 0.0)))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None


class SuppressionTable:
    """The current list: key -> reason. Applied in topic order, so the last change wins."""

    def __init__(self) -> None:
        self._entries: dict[str, str] = {}
        self.changes = 0

    def apply(self, change: Change) -> bool:
        """Apply one change; True when it changed the table."""
        if change.reason is None:
            changed = self._entries.pop(change.key, None) is not None
        else:
            changed = self._entries.get(change.key) != change.reason
            self._entries[change.key] = change.reason
        self.changes += changed
        return changed

    def reason(self, key: str) -> str | None:
        return self._entries.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class Suppressions(Protocol):
    """What the send path asks of the list (consumer.state.suppression_topic.SuppressionList)."""

    def blocks(self, message: OutboundMessage) -> bool: ...
    def add(self, message: OutboundMessage, code: int | None) -> None: ...


class RunSuppressions:
    """The list without a topic: remembered for this run only (unit tests, and what came before)."""

    def __init__(self) -> None:
        self._recipients: set[str] = set()

    def blocks(self, message: OutboundMessage) -> bool:
        return message.recipient in self._recipients

    def add(self, message: OutboundMessage, code: int | None) -> None:
        self._recipients.add(message.recipient)
