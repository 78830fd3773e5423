"""The Segment event fixtures (tests/fixtures/events/*.json) and their expected derived views."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from consumer.events.model import Event
from consumer.events.recipients import Channel, find_recipient

EVENTS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "events"
SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
EXPECTED: dict[str, dict[str, Any]] = {
    k: v for k, v in json.loads((EVENTS_DIR / "expected.json").read_text()).items() if not k.startswith("_")
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return data


def all_fixtures() -> list[str]:
    return sorted(p.stem for p in EVENTS_DIR.glob("*.json") if p.stem != "expected")


def views(event: Event) -> dict[str, Any]:
    """The derived views of an event in expected.json's compact form."""
    a, j, t = event.audience, event.journey, event.computed_trait

    def recipient(channel: Channel) -> list[str] | None:
        r = find_recipient(event, channel)
        return None if r is None else [r.address, r.consent.value, r.source]

    return {
        "audience": None if a is None else [a.key, a.entered, a.computation_class, a.form],
        "journey": None
        if j is None
        else [j.journey_id, j.journey_name, j.epoch_id, j.step_key, j.step_id, j.step_name],
        "trait": None if t is None else [t.key, t.value],
        "timezone": event.timezone,
        "sms": recipient(Channel.SMS),
        "whatsapp": recipient(Channel.WHATSAPP),
        "messenger": recipient(Channel.MESSENGER),
    }
