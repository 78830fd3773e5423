"""What a mapping's templates see (the render scope), and template failures as RenderErrors."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from collections.abc import Mapping as JSONObject
from typing import Any

from consumer.errors import RenderError
from consumer.events.model import Event
from consumer.events.recipients import Recipient
from consumer.mappings.model import Mapping
from consumer.mappings.templating import LiquidError, Template


class _Lazy(JSONObject[str, Any]):
    """A mapping computed on first use, so unused derived views cost nothing per render."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], JSONObject[str, Any] | None]) -> None:
        self._make = make
        self._value: JSONObject[str, Any] | None = None

    def _get(self) -> JSONObject[str, Any]:
        if self._value is None:
            self._value = self._make() or {}
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _view(make: Callable[[], Any]) -> _Lazy:
    # Not `asdict`: its deep copy recurses through the event's own nesting (journey_context).
    return _Lazy(
        lambda: {f.name: getattr(v, f.name) for f in dataclasses.fields(v)} if (v := make()) else None
    )


def scope_of(
    event: Event, mapping: Mapping, now: dt.datetime, recipient: Recipient | None
) -> dict[str, object]:
    return {
        "properties": event.properties, "traits": event.traits, "context": event.context,
        "audience": _view(lambda: event.audience), "journey": _view(lambda: event.journey),
        "computed_trait": _view(lambda: event.computed_trait), "event": _Lazy(event.to_segment),
        "recipient": {} if recipient is None else {
            "address": recipient.address, "channel": str(recipient.channel),
            "consent": str(recipient.consent), "source": recipient.source,
        },
        "mapping": {"id": mapping.id, "channel": str(mapping.channel)},
        "now": now, "messageId": event.message_id, "userId": event.user_id, "anonymousId": event.anonymous_id,
        "type": event.type, "timestamp": event.timestamp,
    }  # fmt: skip


def render_field(
    template: Template, scope: dict[str, object], mapping: Mapping, field: str, *, strict: bool | None = None
) -> str:
    """Render one field; `strict` overrides the mapping's missing_variables for optional fields."""
    try:
        return template.render(scope, strict=mapping.strict if strict is None else strict)
    except LiquidError as exc:
        first = str(exc).splitlines()[0]
        raise RenderError(
            f"mapping {mapping.id!r}: {field}: template failed: {first}. Fix the template, add a "
            "`default` filter, or set missing_variables: empty",
            reason="template_error", mapping_id=mapping.id, field=field,
        ) from None  # fmt: skip


def invalid(mapping: Mapping, field: str, reason: str, message: str) -> RenderError:
    return RenderError(
        f"mapping {mapping.id!r}: {field}: {message}", reason=reason, mapping_id=mapping.id, field=field
    )
