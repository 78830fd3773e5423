"""Render: Event x Mapping -> the exact Twilio form parameters, or a typed reason not to send."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from consumer.errors import RenderError
from consumer.events.model import Event
from consumer.mappings.load import parse_mappings
from consumer.mappings.model import Mapping
from consumer.pipeline.body import count_segments
from consumer.pipeline.message import FrequencyCap, OutboundMessage, Skip
from consumer.pipeline.render import render

NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
MS = "MG" + "a" * 32
HX = "HX" + "b" * 32
PHONE = "+14155550123"


def make(**fields: Any) -> Mapping:
    raw: dict[str, Any] = {
        "id": "m1",
        "trigger": {"event": "X"},
        "channel": "sms",
        "sender": {"phone_number": "+14155550100"},
        "content": {"body": "Hello"},
        "policies": {"consent": "ignore"},
    }
    raw.update(fields)
    mappings, problems = parse_mappings({"mappings": [raw]})
    assert problems == []
    return mappings[0]


def event(properties: dict[str, Any] | None = None, **extra: Any) -> Event:
    data: dict[str, Any] = {
        "type": "track",
        "event": "X",
        "messageId": "msg-1",
        "userId": "u1",
        "properties": {"phone": PHONE, **(properties or {})},
    }
    data.update(extra)
    return Event.from_segment(data)


def sent(result: OutboundMessage | Skip) -> OutboundMessage:
    assert isinstance(result, OutboundMessage), result
    return result


def skipped(result: OutboundMessage | Skip) -> Skip:
    assert isinstance(result, Skip), result
    return result


def go(mapping: Mapping, ev: Event | None = None, *, now: dt.datetime = NOW) -> OutboundMessage | Skip:
    return render(ev or event(), mapping, default_region="US", now=now)


def test_an_inline_sms_renders_the_exact_form_parameters() -> None:
    mapping = make(
        content={
            "body": "Hi {{ properties.name | default: 'there' | upcase }}, order {{ properties.order }}"
        },
        options={
            "status_callback": "https://hooks.example.com/s",
            "validity_period": 600,
            "smart_encoded": True,
            "tags": {"campaign": "spring", "order": "{{ properties.order }}"},
        },
    )
    message = sent(go(mapping, event({"name": "ada", "order": "A-1"})))
    assert message.params == (
        ("To", PHONE),
        ("From", "+14155550100"),
        ("Body", "Hi ADA, order A-1"),
        # the correlation (mapping, messageId, userId, channel, fallback depth) rides in the signed URL
        (
            "StatusCallback",
            "https://hooks.example.com/s?kt_mapping=m1&kt_message=msg-1&kt_user=u1&kt_channel=sms&kt_depth=0",
        ),
        ("ValidityPeriod", "600"),
        ("SmartEncoded", "true"),
        ("Tags", '{"campaign":"spring","order":"A-1"}'),
    )
    assert (message.to, message.recipient, message.sender, message.sender_kind) == (
        PHONE,
        PHONE,
        "+14155550100",
        "long_code",
    )
    assert message.segments == 1
    assert message.channel == "sms"


@pytest.mark.parametrize(
    ("fields", "to", "sender_param", "kind"),
    [
        ({"channel": "whatsapp"}, f"whatsapp:{PHONE}", ("From", "whatsapp:+14155550100"), "whatsapp"),
        (
            {"channel": "whatsapp", "sender": {"messaging_service": MS}},
            f"whatsapp:{PHONE}",
            ("MessagingServiceSid", MS),
            "messaging_service",
        ),
        (
            {"channel": "rcs", "sender": {"messaging_service": MS}},
            PHONE,  # a plain number: RCS first, Twilio's SMS fallback
            ("MessagingServiceSid", MS),
            "messaging_service",
        ),
        (
            {"channel": "rcs", "sender": {"messaging_service": MS, "rcs_fallback": False}},
            f"rcs:{PHONE}",
            ("MessagingServiceSid", MS),
            "messaging_service",
        ),
        ({"sender": {"short_code": "89757"}}, PHONE, ("From", "89757"), "short_code"),
        ({"sender": {"phone_number": "+18445550100"}}, PHONE, ("From", "+18445550100"), "toll_free"),
        (
            {
                "channel": "messenger",
                "sender": {"facebook_page_id": "1029384756"},
                "recipient": {"path": "properties.psid"},
            },
            "messenger:7700112233",
            ("From", "messenger:1029384756"),
            "messenger",
        ),
    ],
)
def test_addresses_and_senders_are_written_per_channel(
    fields: dict[str, Any], to: str, sender_param: tuple[str, str], kind: str
) -> None:
    message = sent(go(make(**fields), event({"psid": "7700112233"})))
    assert message.params[:2] == (("To", to), sender_param)
    assert message.to == to
    assert message.sender_kind == kind


def test_a_content_template_sends_every_variable_as_a_string() -> None:
    mapping = make(
        channel="whatsapp",
        content={
            "content_sid": HX,
            "variables": {"1": "{{ properties.name }}", "2": "{{ properties.count }}", "3": 7, "4": True},
        },
    )
    message = sent(go(mapping, event({"name": "Grace", "count": 3})))
    params = dict(message.params)
    assert params["ContentSid"] == HX
    assert json.loads(params["ContentVariables"]) == {"1": "Grace", "2": "3", "3": "7", "4": "true"}
    assert "Body" not in params
    assert message.segments == 1


def test_an_mms_repeats_media_url_and_drops_media_that_rendered_empty() -> None:
    mapping = make(
        channel="mms",
        content={
            "body": "Look",
            "media": [
                "{{ properties.image }}",
                "{{ properties.no_such_image }}",
                "https://cdn.example.com/b.png",
            ],
        },
        missing_variables="empty",
    )
    message = sent(go(mapping, event({"image": "https://cdn.example.com/a.png"})))
    assert [p for p in message.params if p[0] == "MediaUrl"] == [
        ("MediaUrl", "https://cdn.example.com/a.png"),
        ("MediaUrl", "https://cdn.example.com/b.png"),
    ]


def test_a_media_only_message_sends_no_body() -> None:
    message = sent(go(make(channel="mms", content={"media": ["https://cdn.example.com/a.png"]})))
    assert [k for k, _ in message.params] == ["To", "From", "MediaUrl"]


@pytest.mark.parametrize(
    ("content", "props", "reason", "field"),
    [
        ({"body": "Hi {{ properties.name }}"}, {}, "template_error", "content.body"),
        ({"body": "{{ properties.text }}"}, {"text": "   "}, "empty_body", "content.body"),
        ({"body": "{{ properties.text }}"}, {"text": "x" * 1601}, "body_too_long", "content.body"),
        (
            {"body": "x", "media": ["{{ properties.url }}"]},
            {"url": "javascript:alert(1)"},
            "invalid_media_url",
            "content.media.0",
        ),
    ],
)
def test_broken_results_raise_a_render_error_naming_the_field(
    content: dict[str, Any], props: dict[str, Any], reason: str, field: str
) -> None:
    channel = "mms" if "media" in content else "sms"
    with pytest.raises(RenderError) as caught:
        go(make(channel=channel, content=content), event(props))
    assert (caught.value.reason, caught.value.field, caught.value.mapping_id) == (reason, field, "m1")
    assert field in caught.value.message


def test_missing_variables_render_empty_when_the_mapping_allows_it() -> None:
    message = sent(go(make(content={"body": "Hi {{ properties.name }}!"}, missing_variables="empty")))
    assert dict(message.params)["Body"] == "Hi !"


def test_a_missing_variable_can_be_defaulted_even_in_strict_mode() -> None:
    message = sent(
        go(make(content={"body": "{% if properties.vip %}VIP {% endif %}{{ properties.n | default: 0 }}"}))
    )
    assert dict(message.params)["Body"] == "0"


@pytest.mark.parametrize(
    ("policy", "subscription", "outcome"),
    [
        ("require_subscribed", "SUBSCRIBED", "send"),
        ("require_subscribed", "UNSUBSCRIBED", "unsubscribed"),
        ("require_subscribed", None, "consent_unknown"),
        ("require_subscribed", "DID_NOT_SUBSCRIBE", "not_subscribed"),
        ("allow_unknown", None, "send"),
        ("allow_unknown", "UNSUBSCRIBED", "unsubscribed"),
        ("allow_unknown", "DID_NOT_SUBSCRIBE", "not_subscribed"),
        ("ignore", "UNSUBSCRIBED", "send"),
    ],
)
def test_the_consent_policy_decides_per_subscription_state(
    policy: str, subscription: str | None, outcome: str
) -> None:
    context = (
        {"messaging_subscriptions": [{"key": PHONE, "type": "SMS", "status": subscription}]}
        if subscription
        else {}
    )
    result = go(make(policies={"consent": policy}), event(context=context))
    assert (result.reason if isinstance(result, Skip) else "send") == outcome


def test_a_missing_recipient_and_an_invalid_number_are_told_apart_without_leaking_the_number() -> None:
    nobody = Event.from_segment({"type": "track", "event": "X", "messageId": "m"})
    assert skipped(go(make(), nobody)).reason == "no_recipient"
    invalid = skipped(go(make(), event({"phone": "+1415555"})))
    assert invalid.reason == "invalid_number"
    assert "+1415555" not in invalid.detail


def test_a_recipient_template_is_normalised_with_the_mapping_region() -> None:
    mapping = make(recipient={"template": "{{ properties.mobile }}", "default_region": "FR"})
    message = sent(go(mapping, event({"mobile": "06 12 34 56 78"})))
    assert message.to == "+33612345678"
    assert skipped(go(mapping, event({"mobile": "not a number"}))).reason == "invalid_number"


def test_an_alphanumeric_sender_is_not_used_for_us_or_canadian_numbers() -> None:
    mapping = make(sender={"alphanumeric_id": "ACME"})
    assert skipped(go(mapping)).reason == "sender_not_allowed"
    assert skipped(go(mapping, event({"phone": "+16135550123"}))).reason == "sender_not_allowed"
    assert dict(sent(go(mapping, event({"phone": "+33612345678"}))).params)["From"] == "ACME"


def test_a_disabled_mapping_renders_a_skip() -> None:
    assert skipped(go(make(enabled=False))).reason == "disabled"


SCHEDULED = {"sender": {"messaging_service": MS}}


@pytest.mark.parametrize(
    ("appointment", "offset", "too_soon", "expected"),
    [
        (
            "2026-03-05T15:30:00Z",
            "-24h",
            "skip",
            [("SendAt", "2026-03-04T15:30:00Z"), ("ScheduleType", "fixed")],
        ),
        (
            "2026-03-05T17:30:00+02:00",
            "-1d",
            "skip",
            [("SendAt", "2026-03-04T15:30:00Z"), ("ScheduleType", "fixed")],
        ),
        (
            "2026-03-02T10:16:01Z",
            "0s",
            "skip",
            [("SendAt", "2026-03-02T10:16:01Z"), ("ScheduleType", "fixed")],
        ),
        ("2026-03-02T10:15:04Z", "0s", "skip", "send_at_too_soon"),
        ("2026-03-02T20:00:00Z", "-24h", "send_now", []),
        (
            "2026-04-06T09:59:00Z",
            "0s",
            "skip",
            [("SendAt", "2026-04-06T09:59:00Z"), ("ScheduleType", "fixed")],
        ),
        ("2026-04-07T10:00:00Z", "0s", "skip", "send_at_too_far"),
    ],
)
def test_send_at_is_computed_from_event_fields_and_kept_inside_twilios_window(
    appointment: str, offset: str, too_soon: str, expected: object
) -> None:
    mapping = make(
        **SCHEDULED,
        options={
            "send_at": {"at": "{{ properties.appointment_at }}", "offset": offset, "too_soon": too_soon}
        },
    )
    result = go(mapping, event({"appointment_at": appointment}))
    if isinstance(expected, str):
        assert skipped(result).reason == expected
    else:
        assert [p for p in sent(result).params if p[0] in ("SendAt", "ScheduleType")] == expected


def test_send_at_errors_are_render_errors() -> None:
    options = {"send_at": {"at": "{{ properties.at }}", "too_soon": "error"}}
    with pytest.raises(RenderError, match="not an ISO-8601 time") as bad:
        go(make(**SCHEDULED, options=options), event({"at": "next tuesday"}))
    assert bad.value.reason == "invalid_send_at"
    with pytest.raises(RenderError, match="at least 15") as soon:
        go(make(**SCHEDULED, options=options), event({"at": "2026-03-02T10:05:00Z"}))
    assert soon.value.reason == "send_at_too_soon"


def test_a_tag_that_renders_outside_segments_rules_is_a_render_error() -> None:
    with pytest.raises(RenderError) as caught:
        go(make(options={"tags": {"sku": "{{ properties.sku }}"}}), event({"sku": "a/b"}))
    assert (caught.value.reason, caught.value.field) == ("invalid_tag", "options.tags.sku")


def test_policies_are_resolved_for_the_gate() -> None:
    mapping = make(
        policies={
            "consent": "ignore",
            "dedup": {"key": "{{ properties.order }}:{{ recipient.address }}", "window": "1d"},
            "quiet_hours": {
                "start": "21:00",
                "end": "08:00",
                "action": "drop",
                "default_timezone": "Europe/Paris",
            },
            "frequency_cap": {"max": 3, "per": "1d"},
        }
    )
    message = sent(go(mapping, event({"order": "A-1"}, context={"timezone": "America/Chicago"})))
    assert (message.dedup_key, message.dedup_window_s) == (f"A-1:{PHONE}", 86400)
    assert message.timezone == "America/Chicago"
    assert message.quiet_hours is not None
    assert message.quiet_hours.action == "drop"
    assert message.quiet_hours.start == dt.time(21, 0)
    assert message.frequency_cap == FrequencyCap(limit=3, window_s=86400, scope="m1")
    fallback = sent(go(mapping, event({"order": "A-1"}, context={"timezone": "Not/AZone"})))
    assert fallback.timezone == "Europe/Paris"


def test_default_dedup_key_is_mapping_message_and_recipient_and_can_be_turned_off() -> None:
    assert sent(go(make())).dedup_key == f"m1:msg-1:{PHONE}"
    off = sent(go(make(policies={"consent": "ignore", "dedup": {"enabled": False}})))
    assert (off.dedup_key, off.dedup_window_s, off.timezone, off.frequency_cap) == ("", 0.0, None, None)


def test_templates_see_the_whole_event_audience_journey_and_recipient() -> None:
    body = (
        "{{ event.event }}|{{ audience.key }}|{{ journey.journey_name }}|{{ recipient.source }}|"
        "{{ messageId }}|{{ mapping.id }}|{{ now | date: '%Y-%m-%d' }}|"
        "{{ properties.at | time_add: '-1h' | date: '%H:%M' }}"
    )
    ev = event(
        {"cart_7d": True, "at": "2026-03-05T15:30:00Z", "journey_metadata": {"journey_name": "Flow"}},
        context={"personas": {"computation_class": "audience", "computation_key": "cart_7d"}},
    )
    message = sent(go(make(content={"body": body}), ev))
    assert dict(message.params)["Body"] == "X|cart_7d|Flow|properties.phone|msg-1|m1|2026-03-02|14:30"


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("é" * 160, 1),
        ("ü" * 70, 1),
        ("Ç" * 160, 1),
        ("ç" * 71, 2),
        ("ł" * 70, 1),
        ("ł" * 71, 2),
        ("ł" * 134, 2),
        ("ł" * 135, 3),
        ("😀" * 35, 1),
        ("😀" * 36, 2),
    ],
)
def test_segments_count_gsm7_and_ucs2_like_twilio(body: str, segments: int) -> None:
    assert count_segments(body) == segments


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://[not-an-ip]/a.png",
        "https://cdn.example.com/a b.png",
        "https://cdn.example.com/a\n.png",
        "https://cdn.example.com/a\t.png",
    ],
)
def test_media_urls_twilio_would_reject_are_render_errors(url: str) -> None:
    mapping = make(channel="mms", content={"body": "x", "media": ["{{ properties.url }}"]})
    with pytest.raises(RenderError) as caught:
        go(mapping, event({"url": url}))
    assert (caught.value.reason, caught.value.field) == ("invalid_media_url", "content.media.0")


def test_a_send_at_beyond_the_calendar_is_a_render_error() -> None:
    options = {"send_at": {"at": "{{ properties.at }}", "offset": "1d"}}
    with pytest.raises(RenderError) as caught:
        go(make(**SCHEDULED, options=options), event({"at": "9999-12-31T23:00:00Z"}))
    assert caught.value.reason == "invalid_send_at"


@pytest.mark.parametrize("value", ["spring\nsale", "spring\r\nsale"])
def test_a_tag_rendering_with_a_newline_inside_is_a_render_error(value: str) -> None:
    with pytest.raises(RenderError) as caught:
        go(make(options={"tags": {"sku": "{{ properties.sku }}"}}), event({"sku": value}))
    assert caught.value.reason == "invalid_tag"


@pytest.mark.parametrize("zone", ["America", "Europe", "a" * 300])
def test_an_event_time_zone_naming_a_directory_or_too_long_falls_back(zone: str) -> None:
    quiet = {"start": "21:00", "end": "08:00", "default_timezone": "Europe/Paris"}
    mapping = make(policies={"consent": "ignore", "quiet_hours": quiet})
    assert sent(go(mapping, event(context={"timezone": zone}))).timezone == "Europe/Paris"


def test_deeply_nested_journey_context_renders_without_exhausting_the_stack() -> None:
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(700):
        nested = {"a": nested}
    mapping = make(content={"body": "Hi {{ journey.step_name | default: 'there' }}"})
    assert ("Body", "Hi there") in sent(go(mapping, event({"journey_context": nested}))).params
