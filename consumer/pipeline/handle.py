"""One event through the pure core: match, render, and a decision per mapping.

The service and `preview` both call this, so what preview shows is what the service does:

    handle(index, event) -> [Send | Skip | Fail, …]   (at least one: Skip "no_mapping" when none fired)

A `Fail` is dead-lettered by the service (stage render). A bug in render (an unexpected exception)
is a `Fail` with reason `internal` for that one (event, mapping), never a crash of the partition.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from consumer.errors import RenderError
from consumer.events.model import Event
from consumer.mappings.match import MatchIndex
from consumer.mappings.model import Mapping
from consumer.pipeline.correlation import may_fire
from consumer.pipeline.message import OutboundMessage, Skip
from consumer.pipeline.render import render

NO_MAPPING = Skip("", "no_mapping", "no mapping fired for this event")


@dataclass(frozen=True)
class Send:
    """Send `message` (subject to the send path's gates: dedup, quiet hours, caps, pacing)."""

    message: OutboundMessage

    @property
    def mapping_id(self) -> str:
        return self.message.mapping_id


@dataclass(frozen=True)
class Fail:
    """The mapping could not render a valid request for this event: dead-letter it."""

    error: RenderError

    @property
    def mapping_id(self) -> str:
        return self.error.mapping_id


Decision = Send | Skip | Fail


def decide(
    event: Event, mapping: Mapping, *, default_region: str, now: dt.datetime, strict_numbers: bool = False
) -> Decision:
    """What `mapping` does with `event` at `now`."""
    try:
        result = render(event, mapping, default_region=default_region, now=now, strict_numbers=strict_numbers)
    except RenderError as error:
        return Fail(error)
    except Exception as exc:  # noqa: BLE001  a render bug must dead-letter one message, not stop the partition
        return Fail(
            RenderError(
                f"unexpected {type(exc).__name__} while rendering: {exc}",
                reason="internal",
                mapping_id=mapping.id,
            )
        )
    return result if isinstance(result, Skip) else Send(result)


def handle(
    index: MatchIndex, event: Event, *, default_region: str, now: dt.datetime, strict_numbers: bool = False
) -> list[Decision]:
    """A decision for every mapping that fires for `event`; `[NO_MAPPING]` when none does."""
    # The loop guard: a status event about a fallback's message fires only mappings that ask for it.
    mappings = [m for m in index.match(event) if may_fire(event, m.trigger.max_fallback_depth)]
    if not mappings:
        return [NO_MAPPING]
    return [
        decide(event, m, default_region=default_region, now=now, strict_numbers=strict_numbers)
        for m in mappings
    ]
