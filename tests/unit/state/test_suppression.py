"""The suppression table and its topic records."""

from __future__ import annotations

from consumer.events.recipients import Channel
from consumer.pipeline.message import OutboundMessage
from consumer.state.suppression import (
    Change,
    RunSuppressions,
    SuppressionTable,
    decode_change,
    outbound_scope,
    suppression_key,
)
from consumer.state.suppression_topic import message_key


def message(sender: str, kind: str, recipient: str = "+14155550100") -> OutboundMessage:
    return OutboundMessage(
        mapping_id="m", channel=Channel.SMS, to=recipient, recipient=recipient, sender=sender,
        sender_kind=kind, params=(), segments=1, dedup_key="", dedup_window_s=0, timezone=None,
        quiet_hours=None, frequency_cap=None,
    )  # fmt: skip


def test_the_last_change_of_a_key_wins_and_a_tombstone_removes_it() -> None:
    table = SuppressionTable()
    assert table.apply(Change("k", "stop"))
    assert not table.apply(Change("k", "stop"))  # the same again changes nothing
    assert table.reason("k") == "stop"
    assert table.apply(Change("k", None))
    assert "k" not in table
    assert not table.apply(Change("k", None))
    assert table.changes == 2


def test_records_round_trip_and_a_broken_record_is_skipped() -> None:
    change = Change("MG1|abc", "twilio_21610", 12.5)
    assert decode_change(change.key.encode(), change.value()) == change
    assert decode_change(b"k", None) == Change("k", None)
    assert decode_change(b"k", b"not json") is None
    assert decode_change(None, b"{}") is None


def test_an_outbound_message_is_keyed_like_the_webhook_that_suppressed_its_recipient() -> None:
    assert message_key(message("MG1", "messaging_service")) == suppression_key("MG1", "+14155550100")
    wa = message("+18885550100", "whatsapp")
    assert outbound_scope(wa.sender, wa.sender_kind) == "whatsapp:+18885550100"
    assert message_key(wa) == suppression_key("whatsapp:+18885550100", "whatsapp:+14155550100")
    assert message_key(wa) != message_key(message("+18885550100", "long_code"))


def test_without_a_topic_a_refusal_suppresses_for_the_run() -> None:
    run = RunSuppressions()
    m = message("MG1", "messaging_service")
    assert not run.blocks(m)
    run.add(m, 21610)
    assert run.blocks(m)
