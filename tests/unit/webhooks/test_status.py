"""Webhook posts as status events, and the suppression changes they imply (the pure part)."""

from __future__ import annotations

import pytest

from consumer.errors import WebhookError
from consumer.pipeline.correlation import Correlation
from consumer.state.suppression import suppression_key
from consumer.webhooks.status import inbound_event, opt_out_kind, status_event

NOW = "2026-12-02T05:00:00.000+00:00"
CODES = frozenset({21610, 30005, 30006})
CORR = Correlation(mapping_id="order", message_id="evt-1", user_id="u-1", channel="sms", depth=0)


def post(status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": "SM1",
        "MessageStatus": status,
        "To": "+14155550100",
        "From": "+18885550100",
        **extra,
    }


@pytest.mark.parametrize(("status", "event"), [
    ("queued", "Message Queued"), ("accepted", "Message Queued"), ("sent", "Message Sent"),
    ("delivered", "Message Delivered"), ("undelivered", "Message Undelivered"), ("failed", "Message Failed"),
    ("read", "Message Read"), ("canceled", "Message Canceled"),
])  # fmt: skip
def test_each_twilio_status_becomes_its_segment_track_event(status: str, event: str) -> None:
    produced = status_event(post(status), CORR, NOW, CODES)
    assert produced.event["event"] == event
    assert produced.key == "SM1"  # one message's statuses share a key, so they keep their order
    assert produced.event["messageId"] == f"SM1:{status}"  # a retried callback is the same event


def test_a_status_event_carries_the_correlation_and_the_error_codes_meaning() -> None:
    produced = status_event(post("undelivered", ErrorCode="30007"), CORR, NOW, CODES)
    props = produced.event["properties"]
    assert produced.event["userId"] == "u-1"
    assert isinstance(props, dict)
    assert (props["mapping_id"], props["original_message_id"], props["channel"]) == ("order", "evt-1", "sms")
    assert (props["error_code"], props["error_message"]) == (30007, "message filtered by the carrier")
    assert produced.change is None  # 30007 is not a reason to suppress


@pytest.mark.parametrize(("code", "suppresses"), [("30005", True), ("30006", True), ("30003", False)])
def test_permanent_failures_in_the_list_of_codes_suppress_the_recipient_for_that_sender(
    code: str, suppresses: bool
) -> None:
    produced = status_event(post("undelivered", ErrorCode=code), CORR, NOW, CODES)
    expected = suppression_key("+18885550100", "+14155550100")
    assert (produced.change.key if produced.change else None) == (expected if suppresses else None)


def test_a_post_without_message_sid_names_the_missing_field() -> None:
    with pytest.raises(WebhookError) as caught:
        status_event({"MessageStatus": "sent"}, CORR, NOW, CODES)
    assert caught.value.field == "MessageSid"


@pytest.mark.parametrize(("params", "kind"), [
    ({"OptOutType": "STOP", "Body": "please stop"}, "stop"),  # Advanced Opt-Out's own keywords
    ({"Body": " stop "}, "stop"), ({"Body": "UNSUBSCRIBE"}, "stop"), ({"Body": "Start"}, "start"),
    ({"Body": "help"}, "help"), ({"Body": "stop sending me these"}, "received"),
])  # fmt: skip
def test_opt_out_keywords_follow_optouttype_else_twilios_defaults(params: dict[str, str], kind: str) -> None:
    assert opt_out_kind(params) == kind


def test_stop_and_start_add_and_remove_the_scoped_entry_and_whatsapp_is_its_own_scope() -> None:
    reply = {"From": "+14155550100", "To": "+18885550100"}
    stop = inbound_event({"MessageSid": "SM2", **reply, "Body": "STOP"}, NOW)
    start = inbound_event({"MessageSid": "SM3", **reply, "Body": "START"}, NOW)
    wa = inbound_event({"MessageSid": "SM4", "From": "whatsapp:+14155550100", "To": "whatsapp:+18885550100",
                        "Body": "STOP"}, NOW)  # fmt: skip
    assert stop.event["event"] == "Message Opted Out"
    assert start.event["event"] == "Message Opted In"
    assert stop.change is not None
    assert start.change is not None
    assert wa.change is not None
    assert (stop.change.key, stop.change.reason) == (start.change.key, "stop")
    assert start.change.reason is None  # a tombstone: compaction forgets the entry
    assert wa.change.key != stop.change.key
    assert "+14155550100" not in stop.change.key
    service = inbound_event({"MessageSid": "SM5", "From": "+14155550100", "To": "+18885550100",
                             "MessagingServiceSid": "MG1", "Body": "STOP"}, NOW)  # fmt: skip
    assert service.change is not None
    assert service.change.key.startswith("MG1|")
