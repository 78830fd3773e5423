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
    # The `sources:` entry that made this event of a user's own record (None: a Segment event);
    # it labels metrics and dead letters and is not part of the event's data.
    source: str | None = field(default=None, compare=False)

    @classmethod
    def from_segment(cls, data: Mapping[str, JSON]) -> Event:
        """Build an Event from a Segment JSON object (camelCase keys, as Segment sends them)."""
        known = {
            "type", "messageId", "userId", "anonymousId", "event", "timestamp", "originalTimestamp",
            "sentAt", "receivedAt", "properties", "traits", "context", "integrations", "external_ids",
            "version",
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
            external_ids=tuple(x for x in _list(data.get("external_ids")) if isinstance(x, Mapping)),
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

    @property
    def audience(self) -> Membership | None:
        """Audience (or classic journey step) membership, read the way Segment reads it.

        The value sits at `properties[computation_key]` (track) or `traits[computation_key]`
        (identify), and only counts when `computation_class` is `audience` or `journey_step`.
        Event names are configurable per Segment connection, so they are never consulted.
        """
        personas = self.personas
        klass = personas.get("computation_class")
        key = personas.get("computation_key")
        # A non-text class (a list, say) is not hashable: test the type before the set.
        if not isinstance(klass, str) or klass not in MEMBERSHIP_CLASSES:
            return None
        if not isinstance(key, str) or not key:
            return None
        if self.type == "track":
            form, source = "track", self.properties
        elif self.type == "identify":
            form, source = "identify", self.traits
        else:
            return None
        entered = _as_bool(source.get(key))
        if entered is None:
            return None
        return Membership(key=key, entered=entered, computation_class=str(klass), form=form)

    @property
    def journey(self) -> JourneyStep | None:
        """The journey step this event represents, if any.

        Present when `computation_class` is `journey_step` or the properties carry
        `journey_metadata` / `journey_context` (event-triggered journeys); every field is optional.
        """
        personas = self.personas
        meta = _obj(self.properties.get("journey_metadata"))
        context = _obj(self.properties.get("journey_context"))
        is_step = personas.get("computation_class") == "journey_step"
        if not (is_step or "journey_metadata" in self.properties or "journey_context" in self.properties):
            return None
        return JourneyStep(
            journey_id=_opt_nonempty(meta.get("journey_id")),
            journey_name=_opt_nonempty(meta.get("journey_name")),
            epoch_id=_opt_nonempty(meta.get("epoch_id")),
            step_key=_opt_nonempty(personas.get("computation_key")),
            step_id=_opt_nonempty(meta.get("step_id")),
            step_name=_opt_nonempty(meta.get("step_name")),
            journey_context=context,
        )

    @property
    def computed_trait(self) -> ComputedTrait | None:
        """A computed trait update: identify with `computation_class: trait`, or track with `trait_key`."""
        personas = self.personas
        is_trait = personas.get("computation_class") == "trait"
        if self.type == "identify" and is_trait:
            key = personas.get("computation_key")
            if isinstance(key, str) and key:
                return ComputedTrait(key=key, value=self.traits.get(key))
            return None
        if self.type == "track":
            key = self.properties.get("trait_key")
            if not isinstance(key, str) or not key:
                key = personas.get("computation_key") if is_trait else None
            if isinstance(key, str) and key and (is_trait or key in self.properties):
                return ComputedTrait(key=key, value=self.properties.get(key))
        return None

    @property
    def timezone(self) -> str | None:
        """The recipient's IANA time zone: `context.timezone`, else traits / context.traits / properties."""
        for source in (self.context, self.traits, _obj(self.context.get("traits")), self.properties):
            value = source.get("timezone")
            if isinstance(value, str) and value.strip():
                return value.strip()
        return None


#: `computation_class` values whose membership value is read (Segment's own rule).
MEMBERSHIP_CLASSES = frozenset({"audience", "journey_step"})


@dataclass(frozen=True)
class Membership:
    """Audience (or classic journey step) membership carried by one event."""

    key: str  # computation_key
    entered: bool  # True = entered, False = exited
    computation_class: str  # "audience" | "journey_step"
    form: str  # "track" | "identify"


@dataclass(frozen=True)
class JourneyStep:
    """A journey step (classic or event-triggered); every field may be absent."""

    journey_id: str | None
    journey_name: str | None
    epoch_id: str | None
    step_key: str | None  # context.personas.computation_key
    step_id: str | None
    step_name: str | None
    journey_context: Mapping[str, JSON]


@dataclass(frozen=True)
class ComputedTrait:
    """A computed trait's new value."""

    key: str
    value: JSON


def _as_bool(value: JSON) -> bool | None:
    """A membership value: a boolean or the string "true"/"false" (any case); anything else is None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return None


def _opt_nonempty(value: JSON) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _opt_str(value: JSON) -> str | None:
    return None if value is None else str(value)


def _list(value: JSON) -> list[JSON]:
    return value if isinstance(value, list) else []


def _obj(value: JSON) -> Mapping[str, JSON]:
    return value if isinstance(value, Mapping) else {}
