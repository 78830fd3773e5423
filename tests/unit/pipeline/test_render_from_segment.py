"""Render behaviours a user migrating from Segment's Twilio Messaging destination relies on (issue 17)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from consumer.errors import RenderError
from consumer.events.model import Event
from consumer.mappings.load import parse_mappings
from consumer.mappings.model import Mapping
from consumer.pipeline.message import OutboundMessage, Skip
from consumer.pipeline.render import render

NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
MS = "MG" + "a" * 32
HX = "HX" + "b" * 32
PHONE = "+14155550123"


def problems(**fields: Any) -> list[str]:
    raw: dict[str, Any] = {
        "id": "m1", "trigger": {"event": "X"}, "channel": "sms", "sender": {"phone_number": "+14155550100"},
        "content": {"body": "Hello"}, "policies": {"consent": "ignore"},
    }  # fmt: skip
    raw.update(fields)
    return parse_mappings({"mappings": [raw]})[1]


def make(**fields: Any) -> Mapping:
    raw: dict[str, Any] = {
        "id": "m1", "trigger": {"event": "X"}, "channel": "sms", "sender": {"phone_number": "+14155550100"},
        "content": {"body": "Hello"}, "policies": {"consent": "ignore"},
    }  # fmt: skip
    raw.update(fields)
    mappings, found = parse_mappings({"mappings": [raw]})
    assert found == []
    return mappings[0]


def go(
    mapping: Mapping, properties: dict[str, Any] | None = None, now: dt.datetime = NOW
) -> OutboundMessage | Skip:
    ev = Event.from_segment(
        {"type": "track", "event": "X", "messageId": "m-1", "userId": "u1",
         "properties": {"phone": PHONE, **(properties or {})}}
    )  # fmt: skip
    return render(ev, mapping, default_region="US", now=now)


def sent(result: OutboundMessage | Skip) -> OutboundMessage:
    assert isinstance(result, OutboundMessage), result
    return result


def param(message: OutboundMessage, name: str) -> list[str]:
    return [v for k, v in message.params if k == name]


# 1. RCS -------------------------------------------------------------------------------------------


def test_rcs_through_a_messaging_service_sends_a_plain_e164_to_so_twilio_can_fall_back_to_sms() -> None:
    message = sent(go(make(channel="rcs", sender={"messaging_service": MS})))
    assert param(message, "To") == [PHONE]
    assert param(message, "MessagingServiceSid") == [MS]


def test_rcs_without_fallback_is_a_sender_option_that_sends_the_rcs_address() -> None:
    message = sent(go(make(channel="rcs", sender={"messaging_service": MS, "rcs_fallback": False})))
    assert param(message, "To") == [f"rcs:{PHONE}"]


@pytest.mark.parametrize("fallback", ["+14155550100", "89757", "ACME"])
def test_fallback_from_names_the_sms_sender_twilio_falls_back_to(fallback: str) -> None:
    message = sent(go(make(channel="rcs", sender={"messaging_service": MS, "fallback_from": fallback})))
    assert param(message, "FallbackFrom") == [fallback]
    assert param(message, "To") == [PHONE]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"channel": "sms", "sender": {"messaging_service": MS, "fallback_from": "+14155550100"}}, "RCS"),
        ({"channel": "rcs", "sender": {"messaging_service": MS, "fallback_from": "not a sender!"}}, "E.164"),
        ({"channel": "rcs", "sender": {"messaging_service": MS, "fallback_from": "+14155550100\n"}}, "E.164"),
        (
            {
                "channel": "rcs",
                "sender": {"messaging_service": MS, "fallback_from": "+14155550100", "rcs_fallback": False},
            },
            "rcs_fallback",
        ),
        ({"channel": "sms", "sender": {"messaging_service": MS, "rcs_fallback": False}}, "RCS"),
    ],
)
def test_fallback_from_is_refused_where_twilio_refuses_it(fields: dict[str, Any], needle: str) -> None:
    found = problems(**fields)
    assert len(found) == 1, found
    assert needle in found[0]


# 2. optional send time ----------------------------------------------------------------------------


SCHEDULED = {"channel": "sms", "sender": {"messaging_service": MS}}


@pytest.mark.parametrize("properties", [{"at": ""}, {"at": "  "}, {"at": None}, {}])
def test_an_empty_or_absent_send_time_sends_unscheduled_as_segment_does(properties: dict[str, Any]) -> None:
    mapping = make(**SCHEDULED, options={"send_at": {"at": "{{ properties.at }}"}})
    message = sent(go(mapping, properties))
    assert param(message, "SendAt") == []
    assert param(message, "ScheduleType") == []


def test_an_absent_send_time_can_be_made_an_error() -> None:
    mapping = make(**SCHEDULED, options={"send_at": {"at": "{{ properties.at }}", "if_missing": "error"}})
    with pytest.raises(RenderError) as caught:
        go(mapping, {})
    assert caught.value.reason == "invalid_send_at"


# 3. tags ------------------------------------------------------------------------------------------


def test_null_and_blank_literal_tags_are_dropped_as_segment_drops_them() -> None:
    mapping = make(options={"tags": {"a": "x", "n": None, "e": "", "s": "  "}})
    assert param(sent(go(mapping)), "Tags") == ['{"a":"x"}']


def test_a_templated_tag_that_renders_empty_is_dropped_not_an_error() -> None:
    mapping = make(
        options={
            "tags": {"a": "x", "sku": "{{ properties.sku }}"},
        },
        missing_variables="empty",
    )
    assert param(sent(go(mapping)), "Tags") == ['{"a":"x"}']
    assert param(sent(go(mapping, {"sku": " A1 "})), "Tags") == ['{"a":"x","sku":"A1"}']


def test_only_empty_tags_send_no_tags_parameter() -> None:
    assert param(sent(go(make(options={"tags": {"n": None}}))), "Tags") == []


# 4. null or blank sender --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        {"phone_number": None},
        {"phone_number": "  "},
        {"messaging_service": None},
        {"messaging_service": ""},
        {"short_code": None},
    ],
)
def test_a_null_or_blank_sender_is_refused_by_validate_naming_the_field(sender: dict[str, Any]) -> None:
    found = problems(sender=sender)
    assert len(found) == 1, found
    assert f"sender.{next(iter(sender))}" in found[0]
    assert "Fix:" in found[0]


# 5. send-at window --------------------------------------------------------------------------------


def test_fifteen_and_a_half_minutes_ahead_is_scheduled_as_segment_schedules_it() -> None:
    mapping = make(**SCHEDULED, options={"send_at": {"at": "{{ properties.at }}"}})
    assert param(sent(go(mapping, {"at": "2026-03-02T10:15:30Z"})), "SendAt") == ["2026-03-02T10:15:30Z"]


def test_the_send_at_margin_is_a_setting() -> None:
    mapping = make(**SCHEDULED, options={"send_at": {"at": "{{ properties.at }}", "margin": "1m"}})
    result = go(mapping, {"at": "2026-03-02T10:15:30Z"})
    assert isinstance(result, Skip)
    assert result.reason == "send_at_too_soon"


def test_a_send_time_beyond_35_days_can_be_made_an_error() -> None:
    mapping = make(**SCHEDULED, options={"send_at": {"at": "{{ properties.at }}", "too_far": "error"}})
    with pytest.raises(RenderError) as caught:
        go(mapping, {"at": "2026-04-10T10:00:00Z"})
    assert caught.value.reason == "send_at_too_far"


# 6. numbers ---------------------------------------------------------------------------------------


def test_event_numbers_print_in_bodies_as_javascript_prints_them() -> None:
    mapping = make(
        content={"body": "Total {{ properties.total }} big {{ properties.big }} {{ properties.n | plus: 1 }}"}
    )
    body = param(sent(go(mapping, {"total": 100.0, "big": 1e16, "n": 1.5})), "Body")
    assert body == ["Total 100 big 10000000000000000 2.5"]


def test_event_numbers_print_in_content_variables_as_javascript_prints_them() -> None:
    mapping = make(
        content={
            "content_sid": HX,
            "variables": {
                "1": "{{ properties.total }}",
                "2": 285.0,
                "3": "{% if true %}{{ properties.total }}{% endif %}",
            },
        }
    )
    variables = json.loads(param(sent(go(mapping, {"total": 100.0})), "ContentVariables")[0])
    assert variables == {"1": "100", "2": "285", "3": "100"}


# 7. SendAt precision ------------------------------------------------------------------------------


def test_send_at_keeps_the_milliseconds_it_was_given() -> None:
    mapping = make(**SCHEDULED, options={"send_at": {"at": "{{ properties.at }}"}})
    at = "2026-03-02T10:20:02.953Z"
    assert param(sent(go(mapping, {"at": at})), "SendAt") == [at]


# 8. friendly content template names ---------------------------------------------------------------


def test_a_friendly_content_template_name_is_accepted_as_segment_accepts_it() -> None:
    mapping = make(content={"content_sid": f"Template Name [{HX}]"})
    assert param(sent(go(mapping)), "ContentSid") == [HX]


# 9. media from a list field -----------------------------------------------------------------------


def test_media_can_come_from_a_list_field_up_to_ten() -> None:
    mapping = make(channel="mms", content={"body": "Look", "media_from": "properties.images"})
    images = ["https://x.example/1.png", " ", None, "https://x.example/2.png "]
    assert param(sent(go(mapping, {"images": images})), "MediaUrl") == [
        "https://x.example/1.png",
        "https://x.example/2.png",
    ]


def test_a_shorter_media_list_is_no_error_in_strict_mode() -> None:
    mapping = make(channel="mms", content={"body": "Look", "media_from": "properties.images"})
    assert param(sent(go(mapping, {"images": ["https://x.example/1.png"]})), "MediaUrl") == [
        "https://x.example/1.png"
    ]


@pytest.mark.parametrize(
    ("images", "reason"),
    [
        ([f"https://x.example/{i}.png" for i in range(11)], "too_many_media"),
        (["not a url"], "invalid_media_url"),
        ([{"url": "https://x.example/1.png"}], "invalid_media_url"),
    ],
)
def test_a_media_list_twilio_would_refuse_is_a_render_error(images: list[Any], reason: str) -> None:
    mapping = make(channel="mms", content={"body": "Look", "media_from": "properties.images"})
    with pytest.raises(RenderError) as caught:
        go(mapping, {"images": images})
    assert (caught.value.reason, caught.value.field) == (reason, "content.media_from")
