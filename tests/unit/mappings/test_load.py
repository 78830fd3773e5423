"""Mapping files: every validation rule, valid and invalid, with the message and fix users see."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import MappingError
from consumer.events.recipients import Channel
from consumer.mappings.load import load_mappings, parse_mappings
from consumer.mappings.model import InlineContent, Mapping, TemplateContent

MS = "MG" + "a" * 32
HX = "HX" + "b" * 32


def base(**overrides: Any) -> dict[str, Any]:
    """A valid inline SMS mapping; `overrides` replace top-level keys (None deletes one)."""
    mapping: dict[str, Any] = {
        "id": "m1",
        "trigger": {"event": "Order Completed"},
        "channel": "sms",
        "sender": {"phone_number": "+14155550100"},
        "content": {"body": "Hello {{ traits.first_name | default: 'there' }}"},
    }
    for key, value in overrides.items():
        if value is None:
            mapping.pop(key, None)
        else:
            mapping[key] = value
    return mapping


def problems_of(*mappings: dict[str, Any]) -> list[str]:
    _, problems = parse_mappings({"mappings": list(mappings)}, "maps.yaml")
    return problems


def one_problem(mapping: dict[str, Any]) -> str:
    problems = problems_of(mapping)
    assert len(problems) == 1, problems
    return problems[0]


VALID: list[tuple[str, dict[str, Any]]] = [
    ("sms from a long code", base()),
    ("sms from a short code (Segment rejects it)", base(sender={"short_code": "89757"})),
    ("a short code written as a YAML number", base(sender={"short_code": 89757})),
    ("sms from an alphanumeric sender id", base(sender={"alphanumeric_id": "ACME Shop"})),
    ("sms from a Messaging Service", base(sender={"messaging_service": MS})),
    ("a Messaging Service as 'Friendly name [MG…]'", base(sender={"messaging_service": f"Marketing [{MS}]"})),
    (
        "mms with media from a short code",
        base(channel="mms", sender={"short_code": "898989"}, content={"media": ["https://x.example/a.png"]}),
    ),
    (
        "whatsapp inline with one media",
        base(channel="whatsapp", content={"body": "hi", "media": ["https://x.example/a.png"]}),
    ),
    ("rcs from a Messaging Service", base(channel="rcs", sender={"messaging_service": MS})),
    ("messenger from a Facebook page", base(channel="messenger", sender={"facebook_page_id": "1234567890"})),
    (
        "a WhatsApp content template with its declared type",
        base(
            channel="whatsapp",
            content={
                "content_sid": HX,
                "content_type": "twilio/list-picker",
                "variables": {"1": "{{ traits.first_name }}", "2": 5},
            },
        ),
    ),
    (
        "ten media urls on mms",
        base(channel="mms", content={"media": [f"https://x.example/{i}.png" for i in range(10)]}),
    ),
    ("a body of exactly 1600 characters", base(content={"body": "x" * 1600})),
    ("validity period bounds", base(options={"validity_period": 36000})),
    (
        "send_at with a Messaging Service",
        base(
            sender={"messaging_service": MS},
            options={"send_at": {"at": "{{ properties.at }}", "offset": "-24h"}},
        ),
    ),
    (
        "shorten_urls with a Messaging Service",
        base(sender={"messaging_service": MS}, options={"shorten_urls": True}),
    ),
    ("ten tags of scalars", base(options={"tags": {f"k{i}": i for i in range(10)}})),
    ("a status callback URL", base(options={"status_callback": "https://hooks.example.com/s"})),
    (
        "an audience trigger",
        base(trigger={"audience": {"key": "cart_abandoners_7d", "membership": "exited"}}),
    ),
    ("a journey trigger", base(trigger={"journey": {"id": "jou_1", "step_id": "st_4"}})),
    ("a computed-trait trigger", base(trigger={"computed_trait": {"key": "ltv_90d"}})),
    ("a type-only trigger", base(trigger={"type": "identify"})),
    ("several event names", base(trigger={"event": ["Order Completed", "Order Updated"]})),
    (
        "nested conditions",
        base(
            trigger={
                "event": "X",
                "conditions": {
                    "all": [
                        {"path": "properties.total", "gte": 10},
                        {
                            "any": [
                                {"path": "context.locale", "in": ["en-US"]},
                                {"not": {"path": "traits.vip", "exists": True}},
                            ]
                        },
                        {"path": "properties.sku", "matches": "^SKU-\\d+$"},
                    ]
                },
            }
        ),
    ),
    (
        "quiet hours and a cap",
        base(
            policies={
                "quiet_hours": {
                    "start": "21:00",
                    "end": "08:00",
                    "action": "drop",
                    "default_timezone": "Europe/Paris",
                },
                "frequency_cap": {"max": 3, "per": "1d"},
                "dedup": {"enabled": False},
                "consent": "ignore",
            }
        ),
    ),
    ("a recipient path", base(recipient={"path": "properties.mobile", "default_region": "GB"})),
    ("a recipient template", base(recipient={"template": "{{ properties.phone }}"})),
]


@pytest.mark.parametrize(("name", "mapping"), VALID, ids=[v[0] for v in VALID])
def test_valid_mappings_load_without_problems(name: str, mapping: dict[str, Any]) -> None:
    mappings, problems = parse_mappings({"mappings": [mapping]}, "maps.yaml")
    assert problems == []
    assert len(mappings) == 1


def _deep(mapping: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(mapping)
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


# (case, mapping, expected field, words in the message, words in the fix)
INVALID: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("a bad mapping id", base(id="has space"), "id", "should match pattern", "letter or digit"),
    (
        "a phone sender not in E.164",
        base(sender={"phone_number": "4155550100"}),
        "sender.phone_number",
        r"'^\+[1-9]\d{1,14}$'",
        "E.164",
    ),
    (
        "a four-digit short code",
        base(sender={"short_code": "1234"}),
        "sender.short_code",
        r"'^[1-9]\d{4,5}$'",
        "5- or 6-digit",
    ),
    (
        "an alphanumeric id of digits only",
        base(sender={"alphanumeric_id": "12345"}),
        "sender.alphanumeric_id",
        "pattern",
        "at least one letter",
    ),
    (
        "a 12-character alphanumeric id",
        base(sender={"alphanumeric_id": "ABCDEFGHIJKL"}),
        "sender.alphanumeric_id",
        "pattern",
        "1-11",
    ),
    (
        "a malformed Messaging Service SID",
        base(sender={"messaging_service": "MG123"}),
        "sender.messaging_service",
        "^MG[0-9a-fA-F]{32}$",
        "MG",
    ),
    (
        "two senders",
        base(sender={"phone_number": "+14155550100", "short_code": "89757"}),
        "sender",
        "exactly one of",
        "exactly one sender",
    ),
    (
        "a malformed Content SID",
        base(content={"content_sid": "HX12"}),
        "content.content_sid",
        "^HX[0-9a-fA-F]{32}$",
        "HX",
    ),
    ("an unknown channel", base(channel="fax"), "channel", "Input should be", "one of the values"),
    ("a missing trigger", base(trigger=None), "trigger", "Field required", "add `trigger`"),
    ("an unknown key", base(colour="red"), "colour", "Extra inputs", "remove `colour`"),
    (
        "two trigger kinds",
        base(trigger={"event": "X", "audience": {"key": "a"}}),
        "trigger",
        "found event, audience",
        "one mapping per trigger",
    ),
    ("an empty trigger", base(trigger={}), "trigger", "matches nothing", "add `event`"),
    (
        "event names with a non-track type",
        base(trigger={"event": "X", "type": "identify"}),
        "trigger",
        "track events",
        "set it to track",
    ),
    (
        "an empty journey trigger",
        base(trigger={"journey": {}}),
        "trigger.journey",
        "needs id, step_key",
        "step_key",
    ),
    (
        "a condition without an operator",
        base(trigger={"event": "X", "conditions": {"path": "properties.a"}}),
        "trigger.conditions",
        "exactly one operator, found 0",
        "equals",
    ),
    (
        "a condition with two operators",
        base(trigger={"event": "X", "conditions": {"path": "properties.a", "gt": 1, "lt": 5}}),
        "trigger.conditions",
        "found 2",
        "next to `path`",
    ),
    (
        "a condition path from an unknown root",
        base(trigger={"event": "X", "conditions": {"path": "props.a", "exists": True}}),
        "trigger.conditions.path",
        "unknown root 'props'",
        "properties",
    ),
    (
        "a recipient path that cannot be searched",
        base(recipient={"path": "audience.key"}),
        "recipient.path",
        "not searchable",
        "external_ids",
    ),
    (
        "two recipient sources",
        base(recipient={"path": "properties.phone", "template": "{{ traits.phone }}"}),
        "recipient",
        "one of path, sources, template",
        "keep only one",
    ),
    (
        "a body template with a syntax error",
        base(content={"body": "Hi {{ traits.name"}),
        "content.body",
        "invalid Liquid template",
        "syntax",
    ),
    (
        "a body template with an unknown filter",
        base(content={"body": "{{ traits.name | shout }}"}),
        "content.body",
        "unknown filter(s) shout",
        "filters",
    ),
    (
        "a body template with an unknown variable",
        base(content={"body": "{{ trait.name }}"}),
        "content.body",
        "unknown variable(s) trait",
        "variables",
    ),
    (
        "an empty body (Segment allows it)",
        base(content={"body": "  "}),
        "content.body",
        "the body is empty",
        "write the message text",
    ),
    (
        "inline content with neither body nor media",
        base(content={}),
        "content",
        "needs a body or media",
        "content.body",
    ),
    (
        "a body over 1600 characters",
        base(content={"body": "x" * 1601}),
        "content.body",
        "1601 characters",
        "shorten",
    ),
    (
        "eleven media urls",
        base(channel="mms", content={"media": ["https://x.example/a.png"] * 11}),
        "content.media",
        "at most 10 items",
        "number of items",
    ),
    (
        "a media url that is not http",
        base(channel="mms", content={"media": ["ftp://x.example/a.png"]}),
        "content.media",
        "not an http(s) URL",
        "absolute URL",
    ),
    (
        "media on sms",
        base(content={"body": "x", "media": ["https://x.example/a.png"]}),
        "content.media",
        "SMS carries no media",
        "channel: mms",
    ),
    (
        "mms without media",
        base(channel="mms"),
        "content.media",
        "needs at least one media URL",
        "channel: sms",
    ),
    (
        "two media on whatsapp",
        base(channel="whatsapp", content={"media": ["https://x.example/a.png", "https://x.example/b.png"]}),
        "content.media",
        "one media file",
        "keep one",
    ),
    (
        "validity period of 0",
        base(options={"validity_period": 0}),
        "options.validity_period",
        "greater than or equal to 1",
        "range",
    ),
    (
        "validity period over 36000",
        base(options={"validity_period": 36001}),
        "options.validity_period",
        "less than or equal to 36000",
        "range",
    ),
    (
        "send_at with a phone-number sender (Segment ignores it)",
        base(options={"send_at": {"at": "{{ properties.at }}"}}),
        "options.send_at",
        "needs a Messaging Service sender",
        "sender.messaging_service",
    ),
    (
        "send_at with a malformed offset",
        base(
            sender={"messaging_service": MS},
            options={"send_at": {"at": "{{ properties.at }}", "offset": "1 day"}},
        ),
        "options.send_at.offset",
        "not a duration",
        "4h",
    ),
    (
        "shorten_urls with a phone-number sender",
        base(options={"shorten_urls": True}),
        "options.shorten_urls",
        "needs a Messaging Service",
        "sender.messaging_service",
    ),
    (
        "a status callback host with an underscore",
        base(options={"status_callback": "https://my_host.example/s"}),
        "options.status_callback",
        "containing '_'",
        "without underscores",
    ),
    (
        "a status callback that is not a URL",
        base(options={"status_callback": "hooks.example.com"}),
        "options.status_callback",
        "not an http(s) URL",
        "absolute URL",
    ),
    (
        "eleven tags",
        base(options={"tags": {f"k{i}": "v" for i in range(11)}}),
        "options.tags",
        "11 tags",
        "until 10 remain",
    ),
    (
        "a tag key with punctuation",
        base(options={"tags": {"bad!": "v"}}),
        "options.tags",
        "matching ^[a-zA-Z0-9 _-]+$",
        "letters, digits",
    ),
    (
        "a tag value over 128 characters",
        base(options={"tags": {"k": "v" * 129}}),
        "options.tags",
        "1-128 characters",
        "letters, digits",
    ),
    (
        "a tag value that is an object",
        base(options={"tags": {"k": {"a": 1}}}),
        "options.tags",
        "text, number or boolean",
        "scalar",
    ),
    (
        "rcs from a phone number",
        base(channel="rcs"),
        "sender.phone_number",
        "channel rcs cannot be sent from",
        "messaging_service",
    ),
    (
        "messenger from a phone number",
        base(channel="messenger"),
        "sender.phone_number",
        "channel messenger cannot",
        "facebook_page_id",
    ),
    (
        "whatsapp from a short code",
        base(channel="whatsapp", sender={"short_code": "89757"}),
        "sender.short_code",
        "channel whatsapp cannot",
        "phone_number or messaging_service",
    ),
    (
        "mms from an alphanumeric id",
        base(
            channel="mms", sender={"alphanumeric_id": "ACME"}, content={"media": ["https://x.example/a.png"]}
        ),
        "sender.alphanumeric_id",
        "channel mms cannot",
        "phone_number or short_code",
    ),
    (
        "sms from a Facebook page",
        base(sender={"facebook_page_id": "123"}),
        "sender.facebook_page_id",
        "channel sms cannot",
        "alphanumeric_id",
    ),
    (
        "an alphanumeric id to a literal US number",
        base(sender={"alphanumeric_id": "ACME"}, recipient={"template": "+14155550123"}),
        "sender.alphanumeric_id",
        "US/Canadian",
        "+1 recipients",
    ),
    (
        "a list-picker template on sms",
        base(content={"content_sid": HX, "content_type": "twilio/list-picker"}),
        "content.content_type",
        "cannot be sent on sms",
        "whatsapp",
    ),
    (
        "a media template on sms",
        base(content={"content_sid": HX, "content_type": "twilio/media"}),
        "content.content_type",
        "twilio/media templates cannot be sent on sms",
        "mms",
    ),
    (
        "a carousel template on sms (not a catalog)",
        base(content={"content_sid": HX, "content_type": "twilio/carousel"}),
        "content.content_type",
        "cannot be sent on sms",
        "messenger or rcs or whatsapp",
    ),
    (
        "an unknown time zone for quiet hours",
        base(
            policies={"quiet_hours": {"start": "21:00", "end": "08:00", "default_timezone": "Mars/Olympus"}}
        ),
        "policies.quiet_hours.default_timezone",
        "unknown time zone",
        "IANA",
    ),
    (
        "a quiet-hours zone naming a tz directory",
        base(policies={"quiet_hours": {"start": "21:00", "end": "08:00", "default_timezone": "America"}}),
        "policies.quiet_hours.default_timezone",
        "unknown time zone",
        "IANA",
    ),
    (
        "a tag key that looks like a template (keys are never rendered)",
        base(options={"tags": {"{{ properties.k }}": "v"}}),
        "options.tags",
        "tag key",
        "letters, digits",
    ),
    (
        "a tag value with a newline inside (Segment trims only the ends)",
        base(options={"tags": {"campaign": "spring\nsale"}}),
        "options.tags",
        "tag value",
        "letters, digits",
    ),
    (
        "quiet hours without a fallback zone",
        base(policies={"quiet_hours": {"start": "21:00", "end": "08:00"}}),
        "policies.quiet_hours.default_timezone",
        "Field required",
        "add `default_timezone`",
    ),
    (
        "a frequency cap of zero",
        base(policies={"frequency_cap": {"max": 0, "per": "1d"}}),
        "policies.frequency_cap.max",
        "greater than or equal to 1",
        "range",
    ),
    (
        "an unknown consent policy",
        base(policies={"consent": "maybe"}),
        "policies.consent",
        "'require_subscribed', 'allow_unknown' or 'ignore'",
        "one of the values",
    ),
    (
        "a bad recipient region",
        base(recipient={"default_region": "usa"}),
        "recipient.default_region",
        "pattern",
        "ISO 3166",
    ),
]


@pytest.mark.parametrize(("case", "mapping", "field", "message", "fix"), INVALID, ids=[c[0] for c in INVALID])
def test_each_invalid_mapping_is_reported_with_file_id_field_and_fix(
    case: str, mapping: dict[str, Any], field: str, message: str, fix: str
) -> None:
    problem = one_problem(mapping)
    head, _, fix_text = problem.partition(" Fix: ")
    assert head.startswith(f"maps.yaml: mapping {mapping.get('id', '#1')!r}: {field}: "), problem
    assert message in head, problem
    assert fix in fix_text, problem


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    problems = problems_of(
        base(id="a", sender={"phone_number": "123"}, options={"validity_period": 0, "send_at": {"at": "x"}}),
        base(id="b", channel="mms"),
        base(id="c"),
        base(id="c"),
    )
    fields = [p.split(": ")[2] for p in problems]
    assert "sender.phone_number" in fields[0]
    assert set(fields) >= {
        "sender.phone_number",
        "options.validity_period",
        "options.send_at",
        "content.media",
        "id",
    }
    assert any("mapping 'c': id: the id is used twice" in p for p in problems)


def test_channel_rules_still_run_when_the_sender_value_is_malformed() -> None:
    problems = problems_of(base(channel="rcs", sender={"phone_number": "nope"}))
    assert any("sender.phone_number: String should match" in p for p in problems)
    assert any("channel rcs cannot be sent from a phone_number" in p for p in problems)


def test_a_mapping_without_an_id_is_named_by_its_position() -> None:
    problems = problems_of(base(), base(id=None))
    assert problems
    assert problems[0].startswith("maps.yaml: mapping '#2': id: Field required")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"mappings": "nope"}, "the file must hold `mappings: [...]`"),
        ({"mappings": [], "extra": 1}, "top-level key 'extra' is not allowed"),
        ({"version": 2, "mappings": []}, "version 2 is not supported"),
        ({"mappings": ["text"]}, "a mapping must be an object"),
    ],
)
def test_malformed_documents_are_reported(document: object, message: str) -> None:
    _, problems = parse_mappings(document, "maps.yaml")
    assert any(message in p for p in problems), problems


def test_loaded_values_are_normalised_for_the_render_stage() -> None:
    mappings, problems = parse_mappings(
        {
            "mappings": [
                base(
                    id="a",
                    sender={"messaging_service": f"Marketing [{MS}]"},
                    options={"send_at": {"at": "{{ properties.at }}", "offset": "-1d12h"}},
                ),
                base(
                    id="b",
                    channel="whatsapp",
                    content={"content_sid": HX, "variables": {1: "{{ traits.x }}", "n": 7}},
                ),
                base(
                    id="c",
                    sender={"phone_number": "+18885550100"},
                    policies={"frequency_cap": {"max": 1, "per": "90m"}},
                ),
            ]
        },
        "maps.yaml",
    )
    assert problems == []
    a, b, c = mappings
    assert a.sender.value == MS
    assert a.sender.kind == "messaging_service"
    assert a.options.send_at is not None
    assert a.options.send_at.offset == -(86400 + 12 * 3600)
    assert isinstance(b.content, TemplateContent)
    assert {k: t.source for k, t in b.content.variables.items()} == {"1": "{{ traits.x }}", "n": "7"}
    assert c.sender.kind == "toll_free"
    assert c.policies.frequency_cap is not None
    assert c.policies.frequency_cap.per == 5400
    assert c.policies.dedup.enabled
    assert c.policies.dedup.window == 4 * 3600
    assert isinstance(c.content, InlineContent)
    assert c.channel is Channel.SMS


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        ("+18005550100", "toll_free"),
        ("+18335550100", "toll_free"),
        ("+18885550100", "toll_free"),
        ("+14155550100", "long_code"),
        ("+448005550100", "long_code"),
    ],
)
def test_phone_senders_are_classified_by_nanp_toll_free_prefix(number: str, kind: str) -> None:
    mappings, _ = parse_mappings({"mappings": [base(sender={"phone_number": number})]})
    assert mappings[0].sender.kind == kind


def test_mappings_are_frozen() -> None:
    mapping = Mapping.model_validate(base())
    with pytest.raises(ValueError, match="frozen"):
        mapping.enabled = False  # type: ignore[misc]


def test_load_reports_yaml_errors_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mappings:\n  - id: a\n    trigger: [\n", encoding="utf-8")
    with pytest.raises(MappingError) as caught:
        load_mappings(path)
    assert caught.value.problems[0].startswith(f"{path}:4: invalid YAML:")


def test_load_reports_problems_across_files_and_duplicate_ids(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(
        "mappings:\n  - id: same\n    trigger: {event: X}\n    channel: sms\n"
        "    sender: {phone_number: '+14155550100'}\n    content: {body: hi}\n",
        encoding="utf-8",
    )
    second.write_text(
        first.read_text(encoding="utf-8") + "  - id: other\n    channel: fax\n", encoding="utf-8"
    )
    with pytest.raises(MappingError) as caught:
        load_mappings(first, second)
    problems = caught.value.problems
    # Each problem names the line of the field (or of its mapping, for a missing field).
    assert any(p.startswith(f"{second}:7: mapping 'other': trigger: Field required") for p in problems)
    assert any(p.startswith(f"{second}:8: mapping 'other': channel:") for p in problems)
    assert any(f"'same' is defined in {first}:2 and {second}:2" in p for p in problems)


def test_an_empty_file_has_no_mappings(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_mappings(path) == ()


def test_a_duplicate_id_is_reported_even_when_that_mapping_is_invalid_in_another_field() -> None:
    good = {"id": "same", "trigger": {"event": "X"}, "channel": "sms",
            "sender": {"phone_number": "+14155550100"}, "content": {"body": "hi"}}  # fmt: skip
    broken = {**good, "channel": "fax"}
    _, problems = parse_mappings({"mappings": [good, broken]})
    assert any("mapping 'same': id: the id is used twice" in p for p in problems), problems
    assert any("mapping 'same': channel:" in p for p in problems)


def test_validate_names_the_yaml_line_of_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "version: 1\nmappings:\n  - id: a\n    trigger: {event: X}\n    channel: sms\n"
        "    sender:\n      phone_number: '415'\n    content: {body: hi}\n",
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as caught:
        load_mappings(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:7: mapping 'a': sender.phone_number: String should match pattern")
    assert "Fix: write the number in E.164" in problem
