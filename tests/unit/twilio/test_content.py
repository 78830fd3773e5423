"""Start-up template checks: existence, channel support, variables against the {{n}} tokens."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.twilio.content import check_templates, template_channels, template_tokens

TEXT = {"sid": "HX1", "types": {"twilio/text": {"body": "Hi {{1}}, see you {{ 2 }}"}}}
MEDIA = {"sid": "HX2", "types": {"twilio/media": {"body": "Order {{1}}", "media": ["https://x/{{2}}.png"]}}}
QUICK = {
    "sid": "HX3",
    "types": {
        "twilio/quick-reply": {"body": "Visit {{date}}?", "actions": [{"title": "Yes {{1}}"}]},
        "twilio/text": {"body": "Visit {{date}}?"},
    },
}
TEMPLATES: dict[str, dict[str, Any]] = {t["sid"]: t for t in (TEXT, MEDIA, QUICK)}


@pytest.mark.parametrize(
    ("template", "tokens"),
    [(TEXT, {"1", "2"}), (MEDIA, {"1", "2"}), (QUICK, {"date", "1"}), ({"types": {}}, set())],
)
def test_tokens_are_found_anywhere_in_the_types(template: dict[str, Any], tokens: set[str]) -> None:
    assert template_tokens(template) == tokens


def test_a_template_supports_the_union_of_its_types_channels() -> None:
    assert template_channels(QUICK) == {"sms", "whatsapp", "messenger", "rcs"}
    assert "sms" not in template_channels(MEDIA)


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (("m", "HX1", "sms", ("1", "2")), []),
        (("m", "HX1", "WhatsApp", ["2", "1"]), []),
        (("m", "HX2", "mms", ("1", "2")), []),
        (("m", "HX9", "sms", ()), ["does not exist"]),
        (("m", "HX2", "sms", ("1", "2")), ["none of which can be sent over sms"]),
        (("m", "HX1", "sms", ("1",)), ["{{2}}, which the mapping does not fill"]),
        (("m", "HX1", "sms", ("1", "2", "name")), ["no variable {{name}}"]),
        (("m", "HX3", "mms", ("date",)), ["over mms", "{{1}}, which"]),
    ],
)
def test_each_mapping_problem_is_reported(
    requirement: tuple[str, str, str, Any], expected: list[str]
) -> None:
    problems = check_templates([requirement], TEMPLATES)
    assert len(problems) == len(expected)
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem
        assert "mapping 'm'" in problem
