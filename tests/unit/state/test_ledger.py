"""The in-memory side of the sent-message ledger (the Kafka side is tested in integration)."""

from __future__ import annotations

import json

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
    ledger = Ledger(partitions=4)
    assert ledger.claim("k", 0, now=0) == Claim("new")
    assert ledger.claim("k", 0, now=0) == Claim("busy")
    ledger.release("k")
    assert ledger.claim("k", 0, now=0).reserved


def test_a_remembered_send_blocks_its_key_until_the_window_ends() -> None:
    ledger = Ledger(partitions=4)
    ledger.remember(entry("k"), source_partition=5)  # slot 1
    assert ledger.is_sent("k", 5, now=120)
    assert ledger.claim("k", 5, now=120) == Claim("sent")
    assert ledger.claim("k", 5, now=151) == Claim("new")


def test_an_intent_without_an_outcome_is_in_doubt_and_is_settled_by_the_sent_entry() -> None:
    ledger = Ledger(partitions=1)
    ledger.load(0, [entry("k", sent_at=100, ttl=50, state=INTENT)], now=120)
    assert ledger.restored_in_doubt == {"k"}
    assert not ledger.is_sent("k", 0, now=120)
    assert ledger.claim("k", 0, now=120) == Claim("in_doubt", 100.0)
    ledger.remember(entry("k", sent_at=121, state=SENT, sid="SM1"), 0)
    assert ledger.is_sent("k", 0, now=125)
    assert ledger.sids == {"SM1"}
    assert ledger.restored_in_doubt == set()


def test_a_released_intent_frees_its_key() -> None:
    ledger = Ledger(partitions=1)
    ledger.remember(entry("k", state=INTENT), 0)
    ledger.remember(entry("k", state=RELEASED), 0)
    assert ledger.claim("k", 0, now=120) == Claim("new")
    assert len(ledger) == 0


def test_loading_keeps_only_live_entries_and_dropping_a_slot_forgets_it() -> None:
    ledger = Ledger(partitions=2)
    assert ledger.load(0, [entry("live"), entry("dead", sent_at=0, ttl=10)], now=120) == 1
    assert ledger.is_sent("live", 2, now=120)
    assert not ledger.is_sent("dead", 2, now=120)
    ledger.drop(0)
    assert not ledger.is_sent("live", 2, now=120)
    assert len(ledger) == 0


def test_pruning_removes_expired_entries_oldest_first() -> None:
    ledger = Ledger(partitions=1)
    ledger.remember(entry("a", ttl=5), 0)
    ledger.remember(entry("b", ttl=500), 0)
    ledger.remember(entry("c", ttl=5), 0)  # behind a live entry: waits for it (or for the cap)
    assert ledger.prune(now=200) == 1
    assert len(ledger) == 2
    assert ledger.is_sent("b", 0, now=200)
    assert not ledger.is_sent("a", 0, now=200)


def test_the_ledger_never_holds_more_than_its_cap_and_counts_what_it_evicts() -> None:
    ledger = Ledger(partitions=2, max_entries=100)
    for n in range(250):
        ledger.remember(entry(f"k{n}", ttl=10_000), n)
    assert len(ledger) == 100
    assert ledger.evictions == 150
    assert not ledger.is_sent("k0", 0, now=200), "the oldest went first"
    assert ledger.is_sent("k249", 249, now=200)


def test_dropping_a_slot_frees_its_share_of_the_cap() -> None:
    ledger = Ledger(partitions=2, max_entries=10)
    for n in range(10):
        ledger.remember(entry(f"k{n}"), n)
    ledger.drop(0)
    assert len(ledger) == 5
    for n in range(10, 15):
        ledger.remember(entry(f"k{n}"), 1)
    assert ledger.evictions == 0


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
