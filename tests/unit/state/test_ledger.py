"""The sent-message ledger over its state store (the Kafka side is tested in integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.errors import StateError
from consumer.state.ledger import (
    INTENT,
    RELEASED,
    SENT,
    Claim,
    Ledger,
    LedgerEntry,
    decode_entry,
    encode_entry,
    ledger_key,
    recipient_hash,
    request_digests,
)
from consumer.state.store import LedgerStore
from tests.fakes import store


def entry(
    key: str, sent_at: float = 100.0, ttl: float = 50.0, state: str = SENT, sid: str = ""
) -> LedgerEntry:
    return LedgerEntry(
        key, sent_at, sent_at + ttl, recipient_hash("+14155550123"), "m1", state=state, sid=sid
    )


def test_ledger_keys_are_stable_fixed_size_and_carry_no_phone_number() -> None:
    key = ledger_key("m1", "order:A-1", "+14155550123")
    assert key == ledger_key("m1", "order:A-1", "+14155550123")
    assert key != ledger_key("m2", "order:A-1", "+14155550123")
    assert len(key) == 32
    assert "4155550123" not in key + recipient_hash("+14155550123")


def test_a_claimed_key_cannot_be_claimed_again_until_released() -> None:
    ledger = Ledger(store(), partitions=4)
    assert ledger.claim("k", 0, now=0) == Claim("new")
    assert ledger.claim("k", 0, now=0) == Claim("busy")
    ledger.release("k")
    assert ledger.claim("k", 0, now=0).reserved


def test_a_remembered_send_blocks_its_key_until_the_window_ends() -> None:
    ledger = Ledger(store(), partitions=4)
    ledger.remember(entry("k"), source_partition=5)  # slot 1
    assert ledger.is_sent("k", 5, now=120)
    assert ledger.claim("k", 5, now=120) == Claim("sent")
    assert ledger.claim("k", 5, now=151) == Claim("new")
    assert not ledger.is_sent("k", 4, now=120), "another slot's ledger"


def test_an_intent_without_an_outcome_is_in_doubt_and_is_settled_by_the_sent_entry() -> None:
    ledger = Ledger(store(), partitions=1)
    ledger.load(0, [entry("k", sent_at=100, ttl=50, state=INTENT)], now=120)
    assert ledger.restored_in_doubt == {"k"}
    assert not ledger.is_sent("k", 0, now=120)
    assert ledger.claim("k", 0, now=120) == Claim("in_doubt", 100.0)
    ledger.remember(entry("k", sent_at=121, state=SENT, sid="SM1"), 0)
    assert ledger.is_sent("k", 0, now=125)
    assert "SM1" in ledger.sids
    assert list(ledger.sids) == ["SM1"]
    assert ledger.restored_in_doubt == set()


def test_a_released_intent_frees_its_key_and_its_sid_is_no_longer_attributed() -> None:
    ledger = Ledger(store(), partitions=1)
    ledger.remember(entry("k", state=INTENT, sid="SM9"), 0)
    ledger.remember(entry("k", state=RELEASED), 0)
    assert ledger.claim("k", 0, now=120) == Claim("new")
    assert len(ledger) == 0
    assert "SM9" not in ledger.sids


def test_loading_applies_live_entries_forgets_expired_ones_and_dropping_a_slot_keeps_the_disk() -> None:
    ledger = Ledger(store(), partitions=2)
    ledger.remember(entry("dead", sent_at=100, ttl=50), 0)
    assert ledger.load(0, [entry("live"), entry("dead", sent_at=0, ttl=10)], now=120) == 1
    assert ledger.is_sent("live", 2, now=120)
    assert not ledger.is_sent("dead", 2, now=120), "the later, expired entry replaced the earlier one"
    assert len(ledger) == 1
    ledger.drop(0)
    assert ledger.is_sent("live", 2, now=120), "on disk for a later assignment of the slot"


def test_pruning_removes_expired_entries_in_expiry_order_whatever_the_order_written() -> None:
    ledger = Ledger(store(), partitions=1)
    ledger.remember(entry("a", ttl=5), 0)
    ledger.remember(entry("b", ttl=500), 0)
    ledger.remember(entry("c", ttl=5, sid="SM3"), 0)  # behind a long-lived entry: removed all the same
    assert ledger.prune(now=200) == 2
    assert len(ledger) == 1
    assert ledger.is_sent("b", 0, now=200)
    assert "SM3" not in ledger.sids


def test_a_rewritten_entry_expires_by_its_latest_window_only() -> None:
    ledger = Ledger(store(), partitions=1)
    ledger.remember(entry("k", sent_at=100, ttl=10, state=INTENT), 0)
    ledger.remember(entry("k", sent_at=100, ttl=1000), 0)
    assert ledger.prune(now=200) == 0
    assert ledger.is_sent("k", 0, now=200)


def test_the_oldest_of_many_entries_is_still_caught_while_its_window_lasts() -> None:
    ledger = Ledger(store(), partitions=12)
    for n in range(20_000):
        ledger.apply(n % 12, entry(f"k{n}", sent_at=100.0 + n, ttl=86_400))
    assert ledger.prune(now=86_400) == 0, "no window has ended: nothing is removed"
    assert ledger.claim("k0", 0, now=86_499) == Claim("sent"), "the oldest, a second before its window ends"
    assert ledger.claim("k0", 0, now=86_500) == Claim("new")
    assert len(ledger) == 20_000


def test_the_ledger_outlives_its_process_when_its_store_is_kept(tmp_path: Path) -> None:
    first = LedgerStore(tmp_path / "state")
    Ledger(first, partitions=2).remember(entry("k", sid="SM1"), 1)
    first.close()
    again = LedgerStore(tmp_path / "state")
    try:
        ledger = Ledger(again, partitions=2)
        assert ledger.claim("k", 1, now=120) == Claim("sent")
        assert "SM1" in ledger.sids
        assert len(ledger) == 1
    finally:
        again.close()


def test_a_store_another_process_holds_is_refused_with_the_fix(tmp_path: Path) -> None:
    held = LedgerStore(tmp_path / "state")
    try:
        with pytest.raises(StateError, match="CONSUMER_STATE_DIR"):
            LedgerStore(tmp_path / "state")
    finally:
        held.close()


def test_changelog_values_round_trip_and_unreadable_ones_are_ignored() -> None:
    e = entry("k")
    assert decode_entry(b"k", encode_entry(e)) == e
    full = LedgerEntry("k", 1.0, 2.0, "r", "m", "cap", INTENT, "SM1", "d1", "f1")
    assert decode_entry(b"k", encode_entry(full)) == full
    odd = LedgerEntry("k", 1733100000.123456, 1e10, "r", 'order "sms"\\\u00e9', "scope\n", SENT, "", "", "")
    assert json.loads(encode_entry(odd)) == {
        "at": 1733100000.123456, "exp": 1e10, "r": "r", "m": 'order "sms"\\\u00e9', "c": "scope\n",
        "s": "sent",
    }  # fmt: skip
    assert decode_entry(b"k", encode_entry(odd)) == odd
    # Written before intents existed: a send.
    assert decode_entry(b"k", b'{"at":1,"exp":2,"r":"r","m":"m"}') == LedgerEntry("k", 1, 2, "r", "m")
    assert decode_entry(b"k", b"not json") is None
    assert decode_entry(b"k", b'{"at": 1}') is None


def test_the_request_digest_changes_with_any_parameter_and_the_fingerprint_only_with_content() -> None:
    base = (("To", "+14155550100"), ("From", "+14155550199"), ("Body", "Hi"))
    digest, fingerprint = request_digests(base)
    other_to = request_digests((("To", "+14155550111"), *base[1:]))
    other_body = request_digests((*base[:2], ("Body", "Hi!")))
    assert other_to[0] != digest
    assert other_to[1] == fingerprint
    assert other_body[0] != digest
    assert other_body[1] != fingerprint
    assert request_digests(base) == (digest, fingerprint)
