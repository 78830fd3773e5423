"""The sent state: the ledger and the caps restored together, and writes that report their fate."""

from __future__ import annotations

from consumer.errors import KafkaError
from consumer.state.caps import cap_key
from consumer.state.changelog import Changelog
from consumer.state.ledger import LedgerEntry, recipient_hash
from consumer.state.sent import SentState
from tests.fakes import FakeCluster, FakeKafka, FakeProducer

RECIPIENT = recipient_hash("+14155550123")


def state(producer: FakeProducer | None = None, partitions: int = 2) -> tuple[SentState, FakeKafka]:
    kafka = FakeKafka()
    kafka.cluster.create("sent", partitions)
    producer = FakeProducer(kafka.cluster) if producer is None else producer
    changelog = Changelog(kafka.clients(), producer, "sent", partitions)
    return SentState(changelog, max_entries=1000, cap_horizon_s=3600), kafka


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

    again = SentState(Changelog(kafka.clients(), FakeProducer(kafka.cluster), "sent", 2), max_entries=1000)
    restored = again.read([3])
    assert list(restored) == [1], "source partition 3 is recorded in changelog partition 3 mod 2"
    again.restore(restored, now=120)
    assert again.ledger.is_sent("k1", 3, now=120)
    assert not again.caps.allows(cap_key("marketing", RECIPIENT), limit=1, window_s=3600, now=120)
