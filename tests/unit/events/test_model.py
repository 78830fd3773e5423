"""Derived views on Event: audience membership, journey step, computed trait, time zone."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.events.model import ComputedTrait, Event, JourneyStep, Membership
from tests.unit._fixtures import EXPECTED, all_fixtures, load, views


def test_every_fixture_has_expected_views() -> None:
    assert sorted(EXPECTED) == all_fixtures()


@pytest.mark.parametrize("name", all_fixtures())
def test_fixture_views_match_the_reference_rules(name: str) -> None:
    got = views(Event.from_segment(load(name)))
    assert got == EXPECTED[name]


PERSONAS = {"computation_class": "audience", "computation_key": "vip"}


def _track(properties: dict[str, Any], personas: dict[str, Any] | None = None) -> Event:
    return Event.from_segment(
        {"type": "track", "messageId": "m", "userId": "u", "properties": properties,
         "context": {"personas": PERSONAS if personas is None else personas}}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "entered"),
    [(True, True), (False, False), ("true", True), ("false", False), ("TRUE", True), (" False ", False)],
)
def test_membership_reads_booleans_and_their_strings(value: Any, entered: bool) -> None:
    assert _track({"vip": value}).audience == Membership("vip", entered, "audience", "track")


@pytest.mark.parametrize("value", [None, "yes", 1, 0, [], {}])
def test_membership_is_absent_when_the_value_is_not_a_boolean(value: Any) -> None:
    assert _track({"vip": value}).audience is None


@pytest.mark.parametrize(
    "personas",
    [
        {"computation_class": "trait", "computation_key": "vip"},
        {"computation_key": "vip"},
        {"computation_class": "audience"},
        {"computation_class": "audience", "computation_key": ""},
    ],
)
def test_membership_needs_an_audience_or_journey_step_class_and_a_key(personas: dict[str, Any]) -> None:
    assert _track({"vip": True}, personas).audience is None


def test_membership_ignores_the_event_name() -> None:
    event = Event.from_segment(
        {"type": "track", "messageId": "m", "userId": "u", "event": "Whatever Name",
         "properties": {"vip": True}, "context": {"personas": PERSONAS}}
    )  # fmt: skip
    assert event.audience is not None
    assert event.audience.entered


def test_identify_membership_reads_traits_not_properties() -> None:
    event = Event.from_segment(
        {"type": "identify", "messageId": "m", "userId": "u", "traits": {"vip": "false"},
         "properties": {"vip": True}, "context": {"personas": PERSONAS}}
    )  # fmt: skip
    assert event.audience == Membership("vip", False, "audience", "identify")


def test_membership_is_absent_for_other_call_types() -> None:
    event = Event.from_segment(
        {"type": "page", "messageId": "m", "userId": "u", "properties": {"vip": True},
         "context": {"personas": PERSONAS}}
    )  # fmt: skip
    assert event.audience is None


def test_journey_context_is_kept_whole() -> None:
    event = Event.from_segment(load("event_triggered_journey_step"))
    assert event.journey is not None
    scheduled = event.journey.journey_context["appointment_scheduled"]
    assert scheduled["properties"]["clinic"] == "Mission St"


def test_journey_metadata_alone_makes_a_journey_step_with_optional_fields() -> None:
    event = _track({"journey_metadata": {}}, personas={})
    assert event.journey == JourneyStep(None, None, None, None, None, None, {})


def test_journey_is_absent_for_plain_audience_events() -> None:
    assert _track({"vip": True}).journey is None


def test_computed_trait_from_a_track_call_needs_the_trait_key_present() -> None:
    assert _track({"trait_key": "ltv"}, personas={}).computed_trait is None
    assert _track({"trait_key": "ltv", "ltv": 3}, personas={}).computed_trait == ComputedTrait("ltv", 3)


def test_computed_trait_from_identify_keeps_a_null_value() -> None:
    event = Event.from_segment(
        {"type": "identify", "messageId": "m", "userId": "u", "traits": {},
         "context": {"personas": {"computation_class": "trait", "computation_key": "ltv"}}}
    )  # fmt: skip
    assert event.computed_trait == ComputedTrait("ltv", None)


@pytest.mark.parametrize(
    ("data", "timezone"),
    [
        ({"context": {"timezone": "Europe/Paris"}, "traits": {"timezone": "Asia/Tokyo"}}, "Europe/Paris"),
        ({"traits": {"timezone": "Asia/Tokyo"}, "properties": {"timezone": "UTC"}}, "Asia/Tokyo"),
        ({"context": {"traits": {"timezone": "America/Chicago"}}}, "America/Chicago"),
        ({"properties": {"timezone": "UTC"}}, "UTC"),
        ({"context": {"timezone": ""}, "properties": {"timezone": 5}}, None),
        ({}, None),
    ],
)
def test_timezone_prefers_context_then_traits_then_properties(
    data: dict[str, Any], timezone: str | None
) -> None:
    assert Event.from_segment({"type": "track", "messageId": "m", **data}).timezone == timezone


@pytest.mark.parametrize("klass", [[], {}, ["audience"], 1])
def test_a_computation_class_that_is_not_text_means_no_membership(klass: Any) -> None:
    personas = {"computation_class": klass, "computation_key": "k"}
    event = Event.from_segment(
        {
            "type": "track",
            "messageId": "m",
            "userId": "u",
            "properties": {"k": True},
            "context": {"personas": personas},
        }
    )
    assert event.audience is None
