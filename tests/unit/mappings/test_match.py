"""Matching: the index selects mappings by trigger key, then checks triggers and conditions."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.events.model import Event
from consumer.mappings.load import parse_mappings
from consumer.mappings.match import MatchIndex
from consumer.mappings.model import Mapping


def mapping(mid: str, trigger: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": mid,
        "trigger": trigger,
        "channel": "sms",
        "sender": {"phone_number": "+14155550100"},
        "content": {"body": "hi"},
        **extra,
    }


def index_of(*raw: dict[str, Any]) -> MatchIndex:
    mappings, problems = parse_mappings({"mappings": list(raw)})
    assert problems == []
    return MatchIndex(mappings)


def ids(found: list[Mapping]) -> list[str]:
    return [m.id for m in found]


def track(name: str, properties: dict[str, Any] | None = None, **extra: Any) -> Event:
    return Event.from_segment(
        {
            "type": "track",
            "event": name,
            "messageId": "m",
            "userId": "u",
            "properties": properties or {},
            **extra,
        }
    )


def membership(key: str, value: object, *, klass: str = "audience", form: str = "track") -> Event:
    personas = {"computation_class": klass, "computation_key": key}
    if form == "track":
        return track("Audience Entered", {key: value}, context={"personas": personas})
    return Event.from_segment(
        {
            "type": "identify",
            "messageId": "m",
            "userId": "u",
            "traits": {key: value},
            "context": {"personas": personas},
        }
    )


def test_track_events_fire_the_mappings_named_for_them_in_file_order() -> None:
    index = index_of(
        mapping("b", {"event": ["Order Completed", "Order Updated"]}),
        mapping("a", {"event": "Order Completed"}),
        mapping("c", {"event": "Other"}),
    )
    assert ids(index.match(track("Order Completed"))) == ["b", "a"]
    assert ids(index.match(track("Order Updated"))) == ["b"]
    assert index.match(track("Nothing")) == []


def test_a_non_track_event_with_the_same_name_does_not_fire_an_event_trigger() -> None:
    index = index_of(mapping("a", {"event": "X"}))
    assert index.match(Event.from_segment({"type": "page", "event": "X", "messageId": "m"})) == []


@pytest.mark.parametrize(
    ("wanted", "value", "form", "fires"),
    [
        ("entered", True, "track", True),
        ("entered", "true", "identify", True),
        ("entered", False, "track", False),
        ("exited", False, "track", True),
        ("exited", "false", "identify", True),
        ("exited", True, "track", False),
        ("any", True, "track", True),
        ("any", False, "identify", True),
    ],
)
def test_audience_triggers_follow_entered_and_exited_in_both_forms(
    wanted: str, value: object, form: str, fires: bool
) -> None:
    index = index_of(mapping("a", {"audience": {"key": "cart_7d", "membership": wanted}}))
    assert bool(index.match(membership("cart_7d", value, form=form))) is fires


def test_audience_triggers_ignore_other_audiences_and_computation_classes() -> None:
    index = index_of(mapping("a", {"audience": {"key": "cart_7d"}}))
    assert index.match(membership("other", True)) == []
    assert index.match(membership("cart_7d", True, klass="trait")) == []


def test_explain_names_why_a_candidate_does_not_fire() -> None:
    index = index_of(
        mapping("aud", {"audience": {"key": "cart_7d"}}),
        mapping("off", {"audience": {"key": "cart_7d", "membership": "exited"}}, enabled=False),
    )
    verdicts = {v.mapping.id: v.reason for v in index.explain(membership("cart_7d", False))}
    assert verdicts == {"aud": "audience_exited", "off": "disabled"}


JOURNEY_EVENT = {
    "type": "track",
    "event": "Appointment Reminder Step",
    "messageId": "m",
    "userId": "u",
    "context": {"personas": {"computation_class": "journey_step", "computation_key": "appt__reminder_1"}},
    "properties": {"journey_metadata": {"journey_id": "jou_31x", "step_id": "st_4"}},
}


@pytest.mark.parametrize(
    ("trigger", "fires"),
    [
        ({"step_key": "appt__reminder_1"}, True),
        ({"step_id": "st_4"}, True),
        ({"id": "jou_31x"}, True),
        ({"id": "jou_31x", "step_id": "st_4"}, True),
        ({"id": "jou_31x", "step_id": "st_5"}, False),
        ({"step_key": "other"}, False),
        ({"id": "jou_other"}, False),
    ],
)
def test_journey_triggers_match_by_step_key_step_id_or_journey_id(
    trigger: dict[str, str], fires: bool
) -> None:
    index = index_of(mapping("j", {"journey": trigger}))
    assert bool(index.match(Event.from_segment(JOURNEY_EVENT))) is fires


def test_leaving_a_classic_journey_step_does_not_fire_it() -> None:
    index = index_of(mapping("j", {"journey": {"step_key": "j_o_onboarding__day_3"}}))
    entered = membership("j_o_onboarding__day_3", True, klass="journey_step", form="identify")
    left = membership("j_o_onboarding__day_3", False, klass="journey_step", form="identify")
    assert ids(index.match(entered)) == ["j"]
    assert [v.reason for v in index.explain(left)] == ["journey_step_exited"]


def test_computed_trait_and_type_triggers() -> None:
    index = index_of(mapping("t", {"computed_trait": {"key": "ltv_90d"}}), mapping("i", {"type": "identify"}))
    trait = Event.from_segment(
        {
            "type": "identify",
            "messageId": "m",
            "traits": {"ltv_90d": 450.0},
            "context": {"personas": {"computation_class": "trait", "computation_key": "ltv_90d"}},
        }
    )
    assert ids(index.match(trait)) == ["t", "i"]
    assert ids(index.match(track("Trait Computed", {"trait_key": "ltv_90d", "ltv_90d": 1}))) == ["t"]


PROPS = {
    "total": 42.5,
    "count": "3",
    "sku": "SKU-123",
    "tags": ["vip", "new"],
    "flag": True,
    "nothing": None,
    "at": "2026-03-03T15:30:00Z",
    "address": {"city": "Oakland"},
    "items": [{"sku": "a"}, {"sku": "b"}],
    "one": 1,
}

CONDITIONS: list[tuple[dict[str, Any], bool]] = [
    ({"path": "properties.total", "equals": 42.5}, True),
    ({"path": "properties.total", "equals": "42.5"}, False),
    ({"path": "properties.flag", "equals": True}, True),
    ({"path": "properties.one", "equals": True}, False),
    ({"path": "properties.flag", "equals": 1}, False),
    ({"path": "properties.nothing", "equals": None}, True),
    ({"path": "properties.missing", "equals": None}, False),
    ({"path": "properties.total", "not_equals": 1}, True),
    ({"path": "properties.missing", "not_equals": 1}, True),
    ({"path": "properties.sku", "in": ["SKU-123", "SKU-9"]}, True),
    ({"path": "properties.sku", "not_in": ["SKU-123"]}, False),
    ({"path": "properties.missing", "not_in": ["x"]}, True),
    ({"path": "properties.sku", "exists": True}, True),
    ({"path": "properties.nothing", "exists": True}, False),
    ({"path": "properties.missing", "exists": False}, True),
    ({"path": "properties.total", "gt": 42}, True),
    ({"path": "properties.total", "gte": 42.5}, True),
    ({"path": "properties.total", "lt": 42.5}, False),
    ({"path": "properties.count", "lte": 3}, True),
    ({"path": "properties.sku", "gt": 1}, False),
    ({"path": "properties.at", "gt": "2026-03-01T00:00:00+00:00"}, True),
    ({"path": "properties.at", "lt": "2026-03-01T00:00:00Z"}, False),
    ({"path": "properties.tags", "contains": "vip"}, True),
    ({"path": "properties.sku", "contains": "123"}, True),
    ({"path": "properties.address", "contains": "city"}, True),
    ({"path": "properties.sku", "matches": "^SKU-\\d+$"}, True),
    ({"path": "properties.total", "matches": "^4"}, True),
    ({"path": "properties.address.city", "equals": "Oakland"}, True),
    ({"path": "properties.items.1.sku", "equals": "b"}, True),
    ({"path": "properties.items.-1.sku", "equals": "b"}, True),
    ({"path": "properties.items.5.sku", "exists": True}, False),
    ({"path": "properties.sku.deeper", "exists": True}, False),
    ({"path": "event.event", "equals": "Order Completed"}, True),
    ({"path": "userId", "equals": "u"}, True),
    ({"path": "type", "in": ["track", "page"]}, True),
    ({"all": [{"path": "properties.total", "gt": 10}, {"path": "properties.flag", "equals": True}]}, True),
    ({"all": [{"path": "properties.total", "gt": 10}, {"path": "properties.flag", "equals": False}]}, False),
    ({"any": [{"path": "properties.total", "gt": 100}, {"path": "properties.sku", "exists": True}]}, True),
    ({"not": {"path": "properties.flag", "equals": True}}, False),
    (
        {
            "not": {
                "any": [{"path": "properties.x", "exists": True}, {"path": "properties.y", "exists": True}]
            }
        },
        True,
    ),
]


@pytest.mark.parametrize(("condition", "holds"), CONDITIONS, ids=[str(c[0]) for c in CONDITIONS])
def test_conditions_on_dotted_paths(condition: dict[str, Any], holds: bool) -> None:
    index = index_of(mapping("a", {"event": "Order Completed", "conditions": condition}))
    verdicts = index.explain(track("Order Completed", PROPS))
    assert [v.reason for v in verdicts] == [None if holds else "condition_false"]


def test_a_thousand_mappings_are_indexed_not_scanned() -> None:
    raw = [mapping(f"m{i}", {"event": f"Event {i}"}) for i in range(1000)]
    raw += [mapping(f"a{i}", {"audience": {"key": f"aud_{i}"}}) for i in range(1000)]
    index = index_of(*raw)
    assert ids(index.match(track("Event 777"))) == ["m777"]
    assert [v.mapping.id for v in index.explain(membership("aud_5", True))] == ["a5"]


@pytest.mark.parametrize(
    ("condition", "value"),
    [
        ({"path": "properties.at", "gt": "2026-01-01T00:00:00Z"}, 1e300),
        ({"path": "properties.at", "lt": "2026-01-01T00:00:00Z"}, float("nan")),
        ({"path": "properties.n", "gt": 5}, 10**400),
    ],
)
def test_out_of_range_numbers_make_a_condition_false(condition: dict[str, Any], value: Any) -> None:
    index = index_of(mapping("a", {"event": "E", "conditions": condition}))
    assert ids(index.match(track("E", {"at": value, "n": value}))) == []


def test_deeply_nested_journey_context_does_not_exhaust_the_stack() -> None:
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(700):
        nested = {"a": nested}
    condition = {"path": "journey.step_id", "exists": False}
    index = index_of(mapping("a", {"event": "E", "conditions": condition}))
    assert ids(index.match(track("E", {"journey_context": nested}))) == ["a"]
