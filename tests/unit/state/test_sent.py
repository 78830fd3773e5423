"""The sent state: the ledger and the caps restored together, and writes that report their fate."""

from __future__ import annotations

import asyncio
from pathlib import Path

from consumer.errors import KafkaError
from consumer.state.caps import cap_key
from consumer.state.changelog import DEFER_S, Changelog
from consumer.state.ledger import LedgerEntry, encode_entry, recipient_hash
from consumer.state.sent import Restored, SentState
from consumer.state.store import LedgerStore
from tests.fakes import FakeCluster, FakeKafka, FakeProducer, store

RECIPIENT = recipient_hash("+14155550123")


def state(
    producer: FakeProducer | None = None, partitions: int = 2, cap_horizon_s: float = 3600
) -> tuple[SentState, FakeKafka]:
    kafka = FakeKafka()
    kafka.cluster.create("sent", partitions)
    producer = FakeProducer(kafka.cluster) if producer is None else producer
    changelog = Changelog(kafka.clients(), producer, "sent", partitions)
    return SentState(changelog, store(), cap_horizon_s=cap_horizon_s), kafka


def test_a_ledger_write_the_producer_refuses_is_reported_to_the_callback_not_raised() -> None:
    producer = FakeProducer(FakeCluster())
    producer.refuse = lambda topic, value: BufferError("Local: Queue full")
    sent, _ = state(producer)
    errors: list[KafkaError | None] = []
    sent.write(LedgerEntry("k", 100, 150, RECIPIENT, "m1"), 0, errors.append)
    assert len(errors) == 1
    assert isinstance(errors[0], KafkaError)
    assert errors[0].code == "_QUEUE_FULL"
    assert sent.ledger.is_sent("k", 0, now=120), "the send is still remembered in memory"


def test_what_is_written_is_read_back_and_restores_both_the_ledger_and_the_caps() -> None:
    sent, kafka = state()
    acks: list[KafkaError | None] = []
    sent.write(LedgerEntry("k1", 100, 500, RECIPIENT, "m1", cap_scope="marketing"), 3, acks.append)
    sent.changelog.producer.poll(0)
    assert acks == [None]

    again = SentState(
        Changelog(kafka.clients(), FakeProducer(kafka.cluster), "sent", 2), store(), cap_horizon_s=3600
    )
    restored = again.read([3], now=120)
    assert list(restored) == [1], "source partition 3 is recorded in changelog partition 3 mod 2"
    again.restore(restored, now=120)
    assert again.ledger.is_sent("k1", 3, now=120)
    assert not again.caps.allows(cap_key("marketing", RECIPIENT), limit=1, window_s=3600, now=120)


def written(sent: SentState, *entries: LedgerEntry, partition: int = 0) -> None:
    """Write entries and let the fake broker acknowledge them."""
    acks: list[KafkaError | None] = []
    for e in entries:
        sent.write(e, partition, acks.append)
    sent.changelog.producer.poll(0)
    assert acks == [None] * len(entries)
    sent.flush()


def test_a_restart_with_its_store_reads_only_the_changelog_tail(tmp_path: Path) -> None:
    kafka = FakeKafka()
    kafka.cluster.create("sent", 1)
    path = tmp_path / "state"

    def replica(store_: LedgerStore) -> SentState:
        return SentState(Changelog(kafka.clients(), FakeProducer(kafka.cluster), "sent", 1), store_)

    first = replica(LedgerStore(path))
    assert first.read([0], now=120) == {0: Restored(None, 0, complete=True)}
    first.restore({0: Restored(None, 0, complete=True)}, now=120)
    written(first, *(LedgerEntry(f"k{n}", 100, 500, RECIPIENT, "m1") for n in range(3)))
    first.close()
    # Meanwhile another owner of the partition sends one more.
    other = replica(store())
    written(other, LedgerEntry("theirs", 110, 500, RECIPIENT, "m1"))

    again = replica(LedgerStore(path))
    try:
        assert again.read([0], now=120) == {0: Restored(3, 4, complete=True, read=1)}, "the tail only"
        assert all(again.ledger.is_sent(k, 0, now=120) for k in ("k0", "k1", "k2", "theirs"))
        assert again.store.checkpoint(0) == 4
    finally:
        again.close()


def test_an_offset_written_by_someone_else_stops_the_checkpoint_at_the_gap() -> None:
    sent, kafka = state(partitions=1)
    sent.restore(sent.read([0], now=120), now=120)
    acks: list[KafkaError | None] = []
    sent.write(LedgerEntry("a", 100, 500, RECIPIENT, "m1"), 0, acks.append)
    sent.changelog.producer.poll(0)
    assert acks == [None]
    assert sent.store.checkpoint(0) == 0, "acknowledged, not flushed yet: the checkpoint lags (safely)"
    sent.flush()
    assert sent.store.checkpoint(0) == 1
    kafka.cluster.append("sent", 0, b"{}", b"someone-else")  # offset 1, not ours
    written(sent, LedgerEntry("b", 100, 500, RECIPIENT, "m1"))
    assert sent.store.checkpoint(0) == 1, "offset 1 is not in the store: read it next time"


def test_a_checkpoint_the_changelog_no_longer_has_rebuilds_the_slot_from_the_beginning() -> None:
    sent, kafka = state(partitions=1)
    sent.store.put(0, "stale", (10_000.0, 0.0, ""))
    sent.store.set_checkpoint(0, 50)  # beyond the end: the topic was made anew
    kafka.cluster.append("sent", 0, b'{"at":100,"exp":500,"r":"r","m":"m1"}', b"fresh")
    assert sent.read([0], now=120) == {0: Restored(None, 1, complete=True, read=1)}
    assert not sent.ledger.is_sent("stale", 0, now=120), "the store was wiped first"
    assert sent.ledger.is_sent("fresh", 0, now=120)


def test_every_capped_send_counts_once_whether_written_or_restored_and_keyless_ones_too() -> None:
    sent, kafka = state(partitions=1, cap_horizon_s=86_400)
    key = cap_key("marketing", RECIPIENT)
    # A record without a de-duplication key: its ledger key is its coordinates, its window 4 h.
    keyless = LedgerEntry("@events/0/7", 100, 100 + 4 * 3600, RECIPIENT, "m1", cap_scope="marketing")
    written(sent, keyless)
    assert sent.caps.allows(key, limit=2, window_s=86_400, now=200)
    again = SentState(
        Changelog(kafka.clients(), FakeProducer(kafka.cluster), "sent", 1), sent.store, cap_horizon_s=86_400
    )
    again.read([0], now=200)  # the same send restored again: still one count
    assert again.caps.allows(key, limit=2, window_s=86_400, now=200)
    assert not again.caps.allows(key, limit=1, window_s=86_400, now=200)
    # Past the ledger's 4 h the send may happen again, but it still counts against a 24 h cap.
    sent.prune(now=100 + 5 * 3600)
    assert not again.ledger.is_sent("@events/0/7", 0, now=100 + 5 * 3600)
    assert not again.caps.allows(key, limit=1, window_s=86_400, now=100 + 5 * 3600)


def test_a_restore_says_it_is_under_way_and_how_much_is_left_until_it_is_done() -> None:
    sent, kafka = state(partitions=1)
    for n in range(3):
        kafka.cluster.append("sent", 0, encode_entry(LedgerEntry(f"k{n}", 100, 500, RECIPIENT, "m1")), b"k")
    seen: list[tuple[int, int]] = []
    again = SentState(
        sent.changelog, sent.store, on_progress=lambda left: seen.append((again.restoring, left))
    )
    again.read([0], now=120)
    assert len(seen) >= 2
    assert seen[-1] == (0, 0), "done: nothing left, not restoring"
    assert all(restoring == 1 for restoring, _ in seen[:-1]), "readiness is false meanwhile"
    assert again.restoring == 0


def test_checkpoints_written_since_the_last_flush_are_flushed_by_close(tmp_path: Path) -> None:
    kafka = FakeKafka()
    kafka.cluster.create("sent", 1)
    path = tmp_path / "state"
    first = SentState(Changelog(kafka.clients(), FakeProducer(kafka.cluster), "sent", 1), LedgerStore(path))
    first.restore(first.read([0], now=120), now=120)
    acks: list[KafkaError | None] = []
    for n in range(3):
        first.write(LedgerEntry(f"k{n}", 100, 500, RECIPIENT, "m1"), 0, acks.append)
    first.changelog.producer.poll(0)
    first.close()
    again = LedgerStore(path)
    try:
        assert again.checkpoint(0) == 3, "close wrote the checkpoint the acknowledgements had moved"
    finally:
        again.close()


async def test_a_deferred_write_waits_for_the_next_write_and_shares_its_batch() -> None:
    sent, _ = state(partitions=1)
    producer = sent.changelog.producer
    assert isinstance(producer, FakeProducer)
    acks: list[KafkaError | None] = []
    sent.write(LedgerEntry("done", 100, 500, RECIPIENT, "m1", state="sent"), 0, acks.append, defer=True)
    assert len(producer) == 0, "held back: nothing produced yet"
    assert sent.ledger.is_sent("done", 0, now=120), "the store knows it at once"
    sent.write(LedgerEntry("next", 100, 500, RECIPIENT, "m1", state="intent"), 0, acks.append)
    assert [r[2] for r in producer.queue] == [b"done", b"next"], "produced first, in one go with the next"
    producer.poll(0)
    assert acks == [None, None]


async def test_a_deferred_write_with_no_write_after_it_goes_after_a_few_milliseconds() -> None:
    sent, _ = state(partitions=1)
    producer = sent.changelog.producer
    assert isinstance(producer, FakeProducer)
    sent.write(LedgerEntry("done", 100, 500, RECIPIENT, "m1", state="sent"), 0, lambda _e: None, defer=True)
    assert len(producer) == 0
    await asyncio.sleep(DEFER_S * 4)
    assert [r[2] for r in producer.queue] == [b"done"]


def test_off_the_loop_a_deferred_write_is_produced_at_once() -> None:
    sent, _ = state(partitions=1)
    sent.write(LedgerEntry("done", 100, 500, RECIPIENT, "m1", state="sent"), 0, lambda _e: None, defer=True)
    assert len(sent.changelog.producer) == 1, "no loop to wait on: a command or a restore writes at once"
