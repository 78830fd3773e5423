"""Correlation in the StatusCallback URL, and the fallback loop guard."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from consumer.events.model import Event
from consumer.mappings.load import parse_mappings
from consumer.mappings.match import MatchIndex
from consumer.mappings.model import Mapping
from consumer.pipeline.correlation import callback_url, correlation, event_depth, with_default_callback
from consumer.pipeline.handle import NO_MAPPING, Send, handle

ORDER = Event.from_segment({
    "type": "track", "event": "Order Completed", "messageId": "m-1", "userId": "u-1",
    "timestamp": "2026-12-02T05:00:00Z", "properties": {"phone": "+14155550100"},
})  # fmt: skip


def mappings_of(text: str) -> tuple[Mapping, ...]:
    mappings, problems = parse_mappings(yaml.safe_load(text))
    assert not problems
    return mappings


def status(depth: int, name: str = "Message Undelivered") -> Event:
    return Event.from_segment({"type": "track", "event": name, "messageId": "SM1:undelivered",
                               "userId": "u-1", "properties": {"channel": "whatsapp", "phone": "+14155550100",
                               "fallback_depth": depth, "original_message_id": "m-1"}})  # fmt: skip


def test_the_callback_url_carries_mapping_event_user_channel_and_time_and_no_phone_number() -> None:
    url = callback_url("https://hooks.example.com/twilio/status?tenant=a", "order", "sms", ORDER)
    query = parse_qs(urlsplit(url).query)
    assert query == {"tenant": ["a"], "kt_mapping": ["order"], "kt_message": ["m-1"], "kt_user": ["u-1"],
                     "kt_channel": ["sms"], "kt_ts": ["2026-12-02T05:00:00Z"], "kt_depth": ["0"]}  # fmt: skip
    assert "4155550100" not in url
    back = correlation({k: v[0] for k, v in query.items()})
    assert (back.mapping_id, back.message_id, back.user_id, back.depth) == ("order", "m-1", "u-1", 0)


def test_a_message_caused_by_a_status_event_is_one_fallback_deeper_and_keeps_the_original_message_id() -> (
    None
):
    query = parse_qs(
        urlsplit(callback_url("https://h.example.com/s", "sms-fallback", "sms", status(0))).query
    )
    assert query["kt_depth"] == ["1"]
    assert query["kt_message"] == ["m-1"]
    assert event_depth(status(2)) == 2
    assert event_depth(ORDER) == 0


@pytest.mark.parametrize(
    ("allowed", "depth", "fires"), [(0, 0, True), (0, 1, False), (1, 1, True), (1, 2, False)]
)
def test_a_status_event_fires_a_mapping_only_within_its_allowed_fallback_depth(
    allowed: int, depth: int, fires: bool
) -> None:
    mappings = mappings_of(f"""
version: 1
mappings:
  - id: sms-fallback
    trigger: {{event: Message Undelivered, max_fallback_depth: {allowed}}}
    channel: sms
    recipient: {{sources: [properties.phone]}}
    sender: {{phone_number: "+18885550100"}}
    content: {{body: "hi"}}
    policies: {{consent: allow_unknown}}
""")
    decisions = handle(MatchIndex(mappings), status(depth), default_region="US", now=dt.datetime.now(dt.UTC))
    assert (isinstance(decisions[0], Send)) is fires
    if not fires:
        assert decisions == [NO_MAPPING]


def test_the_default_status_callback_goes_to_mappings_without_their_own() -> None:
    mappings = mappings_of("""
version: 1
mappings:
  - id: a
    trigger: {event: X}
    channel: sms
    recipient: {sources: [properties.phone]}
    sender: {phone_number: "+18885550100"}
    content: {body: "hi"}
  - id: b
    trigger: {event: X}
    channel: sms
    recipient: {sources: [properties.phone]}
    sender: {phone_number: "+18885550100"}
    content: {body: "hi"}
    options: {status_callback: "https://own.example.com/cb"}
""")
    a, b = with_default_callback(mappings, "https://hooks.example.com/twilio/status")
    assert a.options.status_callback == "https://hooks.example.com/twilio/status"
    assert b.options.status_callback == "https://own.example.com/cb"
    assert with_default_callback(mappings, "") == mappings
