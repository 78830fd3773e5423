"""The simulator's (and the contract tests') rules for FallbackFrom, as Twilio's spec states them."""

from __future__ import annotations

import pytest

from consumer.simulator.rules import message_problems

MS = "MG" + "a" * 32


@pytest.mark.parametrize("fallback", ["+14155550100", "89757", "ACME"])
def test_a_fallback_sender_with_a_messaging_service_and_a_plain_number_is_accepted(fallback: str) -> None:
    params = [("To", "+14155550123"), ("MessagingServiceSid", MS), ("Body", "Hi"), ("FallbackFrom", fallback)]
    assert message_problems(params) == []


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (
            [("To", "+14155550123"), ("From", "+14155550100"), ("FallbackFrom", "+14155550101")],
            "MessagingServiceSid",
        ),
        ([("To", "rcs:+14155550123"), ("MessagingServiceSid", MS), ("FallbackFrom", "+14155550101")], "rcs:"),
        ([("To", "+14155550123"), ("MessagingServiceSid", MS), ("FallbackFrom", "x@y")], "E.164"),
    ],
)
def test_a_fallback_sender_twilio_refuses_is_a_problem(params: list[tuple[str, str]], needle: str) -> None:
    problems = [str(p) for p in message_problems([*params, ("Body", "Hi")])]
    assert len(problems) == 1, problems
    assert needle in problems[0]
