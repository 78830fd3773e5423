"""The typed event model every stage after decode works on.

`Event` is the Segment envelope with its open objects kept as plain JSON values, so nothing the
producer sent is lost. Derived views (audience membership, journey step, computed trait) are read
the way Segment itself reads them; see reference/segment-events.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = Any  # a JSON value: None, bool, int, float, str, list[JSON], dict[str, JSON]


@dataclass(frozen=True)
class Event:
    """One Segment-shaped event (track, identify, …), immutable once decoded."""

    type: str
    message_id: str
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None  # the track event name
    timestamp: str | None = None
    original_timestamp: str | None = None
    sent_at: str | None = None
    received_at: str | None = None
    properties: Mapping[str, JSON] = field(default_factory=dict)
    traits: Mapping[str, JSON] = field(default_factory=dict)
    context: Mapping[str, JSON] = field(default_factory=dict)
    integrations: Mapping[str, JSON] = field(default_factory=dict)
    external_ids: tuple[Mapping[str, JSON], ...] = ()
    version: int | None = None
    # Top-level keys this model has no field for, kept so re-encoding loses nothing.
    extra: Mapping[str, JSON] = field(default_factory=dict)

    @classmethod
    def from_segment(cls, data: Mapping[str, JSON]) -> Event:
        """Build an Event from a Segment JSON object (camelCase keys, as Segment sends them)."""
        known = {
            "type", "messageId", "userId", "anonymousId", "event", "timestamp", "originalTimestamp",
            "sentAt", "receivedAt", "properties", "traits", "context", "integrations", "external_ids", "version",
        }  # fmt: skip
        version = data.get("version")
        return cls(
            type=str(data.get("type") or ""),
            message_id=str(data.get("messageId") or ""),
            user_id=_opt_str(data.get("userId")),
            anonymous_id=_opt_str(data.get("anonymousId")),
            event=_opt_str(data.get("event")),
            timestamp=_opt_str(data.get("timestamp")),
            original_timestamp=_opt_str(data.get("originalTimestamp")),
            sent_at=_opt_str(data.get("sentAt")),
            received_at=_opt_str(data.get("receivedAt")),
            properties=_obj(data.get("properties")),
            traits=_obj(data.get("traits")),
            context=_obj(data.get("context")),
            integrations=_obj(data.get("integrations")),
            external_ids=tuple(x for x in (data.get("external_ids") or ()) if isinstance(x, Mapping)),
            version=version if isinstance(version, int) and not isinstance(version, bool) else None,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_segment(self) -> dict[str, JSON]:
        """Return the Segment JSON object again (the inverse of `from_segment`)."""
        out: dict[str, JSON] = dict(self.extra)
        pairs: list[tuple[str, JSON]] = [
            ("type", self.type), ("messageId", self.message_id), ("userId", self.user_id),
            ("anonymousId", self.anonymous_id), ("event", self.event), ("timestamp", self.timestamp),
            ("originalTimestamp", self.original_timestamp), ("sentAt", self.sent_at),
            ("receivedAt", self.received_at), ("version", self.version),
        ]  # fmt: skip
        out.update((k, v) for k, v in pairs if v is not None)
        for key, value in (
            ("properties", self.properties), ("traits", self.traits), ("context", self.context),
            ("integrations", self.integrations),
        ):  # fmt: skip
            if value:
                out[key] = dict(value)
        if self.external_ids:
            out["external_ids"] = [dict(x) for x in self.external_ids]
        return out

    @property
    def personas(self) -> Mapping[str, JSON]:
        """`context.personas`, or an empty mapping."""
        return _obj(self.context.get("personas"))


def _opt_str(value: JSON) -> str | None:
    return None if value is None else str(value)


def _obj(value: JSON) -> Mapping[str, JSON]:
    return value if isinstance(value, Mapping) else {}
