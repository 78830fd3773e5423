"""`import-segment`: Segment's exported subscriptions become mappings whose preview gives Segment's body.

The exports in tests/data/segment/ have the shape of Segment's Public API answers (list and single
subscription). Segment's bodies below are what its sendMessage `send()` builds for each subscription's
settings and the event (ContentVariables stringified, as with its stringify flag on).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml

from consumer.cli import main as cli
from consumer.commands.import_segment import import_subscriptions
from consumer.commands.preview import preview_event, validate_main
from consumer.commands.segment_directives import template_of
from consumer.commands.segment_fql import Untranslatable, translate_trigger
from consumer.events.model import Event
from consumer.mappings.load import load_mappings
from consumer.mappings.match import MatchIndex
from consumer.twilio.transport import form_encode
from tests.twilio_contract import assert_valid_message_request

DATA = Path(__file__).resolve().parents[2] / "data" / "segment"
NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
PHONE = "+14155550123"


def imported(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Path, str]:
    out = tmp_path / "mappings.yaml"
    code = cli(["import-segment", str(DATA / name), "-o", str(out)])
    return code, out, capsys.readouterr().err


def test_import_segment_writes_what_it_translates_and_lists_what_it_cannot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, report = imported(tmp_path, "destination-subscriptions.json", capsys)
    assert code == 1  # something was left out
    assert "4 imported, 2 left out" in report
    assert "LEFT OUT subscription hW4cM3tKQrnX7LbB2pVyZe (VIP anything): trigger: " in report
    assert "Receipt with line items): contentVariables.1: directive @arrayPath is not translated" in report
    ids = [m["id"] for m in yaml.safe_load(out.read_text())["mappings"]]
    assert ids == [
        "Order-confirmation-SMS",
        "Cart-abandoners-WhatsApp",
        "Gallery-MMS-scheduled",
        "Promo-over-RCS",
    ]


@pytest.mark.parametrize("name", ["destination-subscriptions.json", "one-subscription.json"])
def test_what_import_segment_writes_passes_validate(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = imported(tmp_path, name, capsys)
    assert validate_main([str(out)]) == 0


def _event(name: str, properties: dict[str, Any], **context: Any) -> Event:
    return Event.from_segment({"type": "track", "event": name, "messageId": "m-1", "userId": "u1",
                               "properties": properties, "context": context})  # fmt: skip


IN_20_MIN = "2026-03-02T10:20:02.953Z"
PREVIEWS = [
    (
        "destination-subscriptions.json", "Order-confirmation-SMS",
        _event("Order Completed", {"order_id": "A-1", "total": 100.0, "coupon": ""},
               traits={"phone": PHONE, "first_name": "Grace"}),
        "To=%2B14155550123&ValidityPeriod=3600&From=%2B19876543210"
        "&Body=Hi+Grace%2C+order+A-1+%28100+USD%29+is+confirmed."
        "&Tags=%7B%22campaign%22%3A%22orders%22%2C%22order%22%3A%22A-1%22%7D",
    ),
    (
        "destination-subscriptions.json", "Cart-abandoners-WhatsApp",
        _event("Audience Entered", {"audience_key": "cart_abandoners_7d", "cart_total": 59.5},
               traits={"phone": PHONE, "first_name": "Grace"}),
        "To=whatsapp%3A%2B14155550123&MessagingServiceSid=MG1234567890abcdef1234567890abcdef"
        "&ContentSid=HX1234567890abcdef1234567890abcdef"
        "&ContentVariables=%7B%221%22%3A%22Grace%22%2C%222%22%3A%2259.5%22%2C%223%22%3A%227%22%7D",
    ),
    (
        "destination-subscriptions.json", "Gallery-MMS-scheduled",
        _event("Product Shared", {"phone": PHONE, "name": "Linen shirt", "price": 25.0, "send_at": IN_20_MIN,
                                  "images": ["https://example.com/a.jpg", "https://example.com/b.jpg"]}),
        "To=%2B14155550123&MessagingServiceSid=MG5555555555bbbbbb5555555555bbbbbb"
        "&SendAt=2026-03-02T10%3A20%3A02.953Z&ScheduleType=fixed&Body=Linen+shirt+is+back%3A+25"
        "&MediaUrl=https%3A%2F%2Fexample.com%2Fa.jpg&MediaUrl=https%3A%2F%2Fexample.com%2Fb.jpg",
    ),
    (
        "destination-subscriptions.json", "Promo-over-RCS",
        _event("Promo Unlocked", {"phone": PHONE, "tier": "gold"}),
        "To=%2B14155550123&MessagingServiceSid=MG9876543210fedcba9876543210fedcba"
        "&Body=Your+gold+reward+is+ready",
    ),
    (
        "one-subscription.json", "Messenger-shipping-update",
        _event("Order Shipped", {"order_id": "A-7", "carrier": "UPS Ground"},
               messenger_user_id="2874563547829"),
        "To=messenger%3A2874563547829&From=messenger%3A104355688284613&Body=Order+A-7+shipped+with+UPS+Ground.",
    ),
]  # fmt: skip


def _index(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> MatchIndex:
    _, out, _ = imported(tmp_path, name, capsys)
    document = yaml.safe_load(out.read_text())
    for mapping in document["mappings"]:
        mapping["enabled"] = True  # a disabled subscription is imported disabled; preview it anyway
    out.write_text(yaml.safe_dump(document), encoding="utf-8")
    return MatchIndex(load_mappings(out))


@pytest.mark.parametrize(("name", "mapping_id", "event", "segment"), PREVIEWS, ids=[p[1] for p in PREVIEWS])
def test_an_imported_mapping_previews_to_segments_body(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, mapping_id: str, event: Event, segment: str
) -> None:
    index = _index(tmp_path, name, capsys)
    outcomes = {o.mapping_id: o for o in preview_event(index, event, default_region="US", now=NOW)}
    message = outcomes[mapping_id].message
    assert message is not None, outcomes[mapping_id]
    ours = form_encode(message.params).decode()
    assert sorted(parse_qsl(ours), key=lambda kv: kv[0]) == sorted(parse_qsl(segment), key=lambda kv: kv[0])
    assert_valid_message_request(message.params)
    assert [o.action for o in outcomes.values()].count("send") == 1  # the others' triggers do not fire


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("one-subscription.json", _event("Order Shipped", {"carrier": "FedEx"}, messenger_user_id="1")),
        ("destination-subscriptions.json", _event("Product Viewed", {"phone": PHONE, "price": 10.0})),
        ("destination-subscriptions.json",
         _event("Product Viewed", {"phone": PHONE, "price": 30.0, "test": True})),
        ("destination-subscriptions.json", _event("Promo Unlocked", {"phone": PHONE})),
        ("destination-subscriptions.json", _event("Audience Entered", {"audience_key": "other"},
                                                  traits={"phone": PHONE})),
    ],
)  # fmt: skip
def test_an_imported_trigger_does_not_fire_where_segments_would_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, event: Event
) -> None:
    outcomes = preview_event(_index(tmp_path, name, capsys), event, default_region="US", now=NOW)
    assert [o.action for o in outcomes if o.action != "not_fired"] == []


@pytest.mark.parametrize(
    ("fql", "trigger"),
    [
        ('type = "track" and event = "Order Completed"', {"type": "track", "event": "Order Completed"}),
        ('event = "Audience Entered"', {"event": "Audience Entered"}),
        ('type = "identify"', {"type": "identify"}),
        ('event = "A" or event = "B"', {"event": ["A", "B"]}),
        ('type = "track" and event = "X" and properties.total >= 100.5',
         {"type": "track", "event": "X", "conditions": {"path": "properties.total", "gte": 100.5}}),
        ('event = "X" and (properties.plan = "pro" or traits.plan = "pro")',
         {"event": "X", "conditions": {"any": [{"path": "properties.plan", "equals": "pro"},
                                               {"path": "traits.plan", "equals": "pro"}]}}),
        ('event = "X" and not properties.test = true',
         {"event": "X", "conditions": {"not": {"path": "properties.test", "equals": True}}}),
        ('event = "X" and !(userId = null)',
         {"event": "X", "conditions": {"not": {"path": "userId", "exists": False}}}),
        ('event = "X" and match(properties.sku, "AB-*")',
         {"event": "X", "conditions": {"path": "properties.sku", "matches": r"\AAB\-.*\Z"}}),
        ('type = "track" and properties.event_name = "say \\"hi\\""',
         {"type": "track", "conditions": {"path": "properties.event_name", "equals": 'say "hi"'}}),
    ],
)  # fmt: skip
def test_common_fql_forms_translate_into_triggers_and_conditions(fql: str, trigger: dict[str, Any]) -> None:
    assert translate_trigger(fql) == trigger


@pytest.mark.parametrize(
    ("fql", "why"),
    [
        ("properties.vip = true", "names no event type"),
        ('type = "track" or type = "identify"', "names no event type"),
        ('event = "X" and length(properties.items) > 2', "length"),
        ('event = "X" and properties.name > "m"', "only numbers"),
        ('type = "identify" and event = "X"', "other than track"),
        ('event = "X" and name = "Home"', "'name'"),
        ('event = "X" and', "too early"),
        ('event = "X" && properties.a = 1', "cannot read"),
    ],
)
def test_fql_it_cannot_translate_is_refused_with_the_reason(fql: str, why: str) -> None:
    with pytest.raises(Untranslatable, match=why):
        translate_trigger(fql)


@pytest.mark.parametrize(
    ("value", "template"),
    [
        ({"@path": "$.properties.images[1]"}, "{{ properties.images[1] }}"),
        ({"@path": "$.event"}, "{{ event.event }}"),
        ({"@path": "$.receivedAt"}, "{{ event.receivedAt }}"),
        ({"@template": "Hi {{ traits.name }}!"}, "Hi {{ traits.name }}!"),
        ({"@if": {"blank": {"@path": "$.properties.a"}, "then": "none", "else": {"@path": "$.properties.a"}}},
         '{% if properties.a == nil or properties.a == "" %}none{% else %}{{ properties.a }}{% endif %}'),
        ("Use {{code}} literally", "{% raw %}Use {{code}} literally{% endraw %}"),
        (100.0, "100"),
    ],
)  # fmt: skip
def test_segment_directives_become_liquid(value: object, template: str) -> None:
    assert template_of(value) == template


def test_a_subscription_our_validation_refuses_is_left_out_with_its_problem() -> None:
    sub = {"id": "s1", "name": "bad", "actionSlug": "sendMessage", "trigger": 'event = "X"',
           "settings": {"channel": "SMS", "senderType": "Phone number", "fromPhoneNumber": "+19876543210",
                        "toPhoneNumber": "+14155550123", "contentTemplateType": "Inline",
                        "inlineBody": "x", "validityPeriod": 99999}}  # fmt: skip
    mappings, report = import_subscriptions([sub])
    assert mappings == []
    assert "LEFT OUT subscription s1 (bad): our validation refuses it" in report[0]
    assert "validity_period" in report[0]


def test_send_at_with_a_phone_sender_is_not_imported_as_segment_ignores_it() -> None:
    sub = {"id": "s1", "name": "phone", "actionSlug": "sendMessage", "trigger": 'event = "X"',
           "settings": {"channel": "SMS", "senderType": "Phone number", "fromPhoneNumber": "+19876543210",
                        "toPhoneNumber": "+14155550123", "contentTemplateType": "Inline",
                        "inlineBody": "x", "sendAt": "2026-03-02T11:00:00Z"}}  # fmt: skip
    mappings, report = import_subscriptions([sub])
    assert "options" not in mappings[0]
    assert "note: sendAt: Segment ignores it without a Messaging Service" in report[1]


def test_an_unreadable_export_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"data": {"items": 1}}')
    assert cli(["import-segment", str(bad)]) == 2
    assert "subscriptions" in capsys.readouterr().err


def test_the_commands_chained_import_validate_preview_give_segments_body(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = imported(tmp_path, "one-subscription.json", capsys)
    assert cli(["validate", str(out)]) == 0
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"type": "track", "event": "Order Shipped", "messageId": "m-1", "userId": "u1",
                    "properties": {"order_id": "A-7", "carrier": "UPS Ground"},
                    "context": {"messenger_user_id": "2874563547829"}}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    capsys.readouterr()
    assert cli(["preview", "--mappings", str(out), "--events", str(events), "--now", "2026-03-02T10:00:00Z",
                "--json"]) == 0  # fmt: skip
    (line,) = capsys.readouterr().out.splitlines()
    params = [tuple(p) for p in json.loads(line)["params"]]
    segment = "To=messenger%3A2874563547829&From=messenger%3A104355688284613"
    segment += "&Body=Order+A-7+shipped+with+UPS+Ground."
    assert form_encode(params).decode() == segment  # Segment's order too: To, From, Body
