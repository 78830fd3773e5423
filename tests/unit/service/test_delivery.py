"""The send path's rules (delivery, lanes, outcomes) with a stub sender and producer: no network,
no real sleeping."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError as RdKafkaError

from consumer.errors import ErrorClass, TwilioError
from consumer.events.recipients import Channel
from consumer.kafka.deadletter import DeadLetterWriter, parse_dead_letter_headers
from consumer.mappings.model import QuietHours
from consumer.metrics import Metrics
from consumer.pipeline.message import FrequencyCap, OutboundMessage
from consumer.pipeline.pacing import AdaptiveLimit, SenderLimits
from consumer.pipeline.retry import RetryPolicy
from consumer.service.delivery import Delivery
from consumer.service.dispatcher import Dispatcher
from consumer.service.exchange import Exchange
from consumer.service.outcomes import Outcomes
from consumer.service.records import RecordState
from consumer.state.changelog import Changelog
from consumer.state.ledger import LedgerEntry, decode_entry, ledger_key
from consumer.state.sent import SentState
from consumer.twilio.client import SendResult
from tests.fake_twilio import SENT as OK
from tests.fake_twilio import Accepted, twilio_error
from tests.fake_twilio import FakeTwilio as FakeSender
from tests.fakes import FakeKafka, store


def message(recipient: str = "+14155550123", **changes: Any) -> OutboundMessage:
    base: dict[str, Any] = {
        "mapping_id": "m1", "channel": Channel.SMS, "to": recipient, "recipient": recipient,
        "sender": "MG" + "1" * 32, "sender_kind": "messaging_service",
        "params": (("To", recipient), ("MessagingServiceSid", "MG" + "1" * 32), ("Body", "hi")),
        "segments": 1, "dedup_key": "", "dedup_window_s": 3600.0, "timezone": None, "quiet_hours": None,
        "frequency_cap": None,
    }  # fmt: skip
    return OutboundMessage(**{**base, **changes})


class Harness:
    def __init__(self, sender: FakeSender, *, clock: Callable[[], float] = lambda: 1_800_000_000.0) -> None:
        self.metrics = Metrics()
        sender.clock = clock  # Twilio's clock and ours agree here
        kafka = FakeKafka()
        self.producer = kafka._producer({})
        self.done: list[RecordState] = []
        self.sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            await asyncio.sleep(0)

        self.state = SentState(Changelog(kafka.clients(), self.producer, "sent", 1), store())
        self.outcomes = Outcomes(self.metrics, DeadLetterWriter(self.producer, "dlq"), self.done.append)
        self.exchange = Exchange(
            twilio=sender, metrics=self.metrics, state=self.state, outcomes=self.outcomes,
            adaptive=AdaptiveLimit(8, minimum=1), policy=RetryPolicy(max_retries=3, base_s=0.1, cap_s=1.0),
            reconcile_delay_s=0, clock=clock, sleep=sleep, rand=lambda: 0.5,
        )  # fmt: skip
        self.delivery = Delivery(
            exchange=self.exchange, metrics=self.metrics, state=self.state, outcomes=self.outcomes,
            limits=SenderLimits(), sleep=sleep,
        )  # fmt: skip
        self.dispatcher = Dispatcher(self.delivery.deliver, self.delivery.on_wire)
        self.offset = 0
        self.pump = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        """Serve the producer's delivery reports, as the service's own pump does."""
        while True:
            self.producer.poll(0)
            await asyncio.sleep(0)

    def record(self, offset: int | None = None) -> RecordState:
        if offset is None:
            offset, self.offset = self.offset, self.offset + 1
        record = RecordState("events", 0, offset, b"k", b"v", [("h", b"1")])
        record.expect(1)
        return record

    async def send(self, *messages: OutboundMessage) -> list[RecordState]:
        records = []
        for msg in messages:
            record = self.record()
            self.dispatcher.submit(record, msg)
            records.append(record)
        await self.settle()
        return records

    async def settle(self) -> None:
        """Wait until every submitted send ran to its end and Kafka acknowledged its writes."""
        await asyncio.wait_for(self.dispatcher.settle(), timeout=30)
        self.producer.poll(0)

    def ledger(self) -> list[LedgerEntry]:
        """What the changelog holds, in order."""
        return [e for m in self.cluster_records("sent") if (e := decode_entry(m.key(), m.value()))]

    def dead_letters(self) -> list[tuple[Any, ...]]:
        return [r for r in self.cluster_records("dlq")]

    def cluster_records(self, topic: str) -> list[Any]:
        return [m for part in self.producer.cluster.topics.get(topic, []) for m in part]


async def until(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (callers bound the wait with asyncio.wait_for)."""
    while not condition():  # noqa: ASYNC110  the condition is plain state, with no event to wait on
        await asyncio.sleep(0.001)


async def test_a_sent_message_finishes_its_record_as_sent() -> None:
    h = Harness(FakeSender())
    [record] = await h.send(message())
    assert record.outcomes == [("m1", "sent", "queued")]
    assert h.done == [record]
    assert (
        h.metrics.registry.get_sample_value(
            "kafka_twilio_twilio_requests_total", {"status_class": "2xx", "code": ""}
        )
        == 1
    )


async def test_retryable_errors_are_retried_with_backoff_and_then_sent() -> None:
    sender = FakeSender(
        twilio_error(ErrorClass.RETRYABLE, 20429, 429), twilio_error(ErrorClass.RETRYABLE, None, None)
    )
    h = Harness(sender)
    [record] = await h.send(message())
    assert record.outcomes[0][1] == "sent"
    assert len(sender.requests) == 3
    assert h.sleeps == [0.05, 0.1]  # full jitter with rand=0.5: half of 0.1 * 2**attempt
    assert h.metrics.registry.get_sample_value("kafka_twilio_retries_total", {"reason": "twilio_20429"}) == 1
    assert h.metrics.registry.get_sample_value("kafka_twilio_retries_total", {"reason": "connection"}) == 1
    assert h.metrics.registry.get_sample_value("kafka_twilio_concurrency_limit") < 8, "429 lowered the limit"


async def test_a_spent_retry_budget_dead_letters_the_record() -> None:
    # 30003: the handset is unreachable for now; retried, but not for ever.
    sender = FakeSender(*[twilio_error(ErrorClass.RETRYABLE, 30003, 400)] * 4)
    h = Harness(sender)
    [record] = await h.send(message())
    assert record.outcomes == [("m1", "dead_lettered", "retries_exhausted")]
    assert len(sender.requests) == 4
    [dead] = h.dead_letters()
    info = parse_dead_letter_headers(dead.headers())
    assert (info.reason, info.twilio_code, info.attempts) == ("retries_exhausted", 30003, 4)


async def test_throttling_is_waited_out_however_long_it_lasts_without_dead_lettering() -> None:
    sender = FakeSender(*[twilio_error(ErrorClass.RETRYABLE, 20429, 429)] * 12)  # budget: 3 retries
    h = Harness(sender)
    [record] = await h.send(message())
    assert record.outcomes == [("m1", "sent", "queued")]
    assert len(sender.requests) == 13
    assert h.dead_letters() == []


async def test_a_recipient_who_replied_stop_is_dead_lettered_once_and_then_suppressed() -> None:
    h = Harness(FakeSender(twilio_error(ErrorClass.RECIPIENT, 21610)))
    first, second = await h.send(message(), message())
    assert first.outcomes == [("m1", "dead_lettered", "twilio_21610")]
    assert second.outcomes == [("m1", "skipped", "suppressed")]


async def test_a_configuration_error_halts_sending_until_resumed_and_loses_nothing() -> None:
    sender = FakeSender(twilio_error(ErrorClass.CONFIGURATION, 20003, 401))
    h = Harness(sender)
    record = h.record()
    h.dispatcher.submit(record, message())
    await asyncio.wait_for(until(lambda: h.delivery.halting.halted), timeout=10)
    assert record.outcomes == [], "not dead-lettered: a bad key must not burn the backlog"
    h.delivery.halting.resume()
    await h.settle()
    assert record.outcomes == [("m1", "sent", "queued")]
    assert len(sender.requests) == 2


async def test_quiet_hours_drop_skips_with_a_reason_and_hold_schedules_through_the_messaging_service() -> (
    None
):
    # 1_800_000_000 is 2027-01-15 08:00 UTC: 03:00 in New York, inside 21:00-09:00.
    quiet = QuietHours(start=dt.time(21), end=dt.time(9), action="drop", default_timezone="America/New_York")
    h = Harness(FakeSender())
    [dropped] = await h.send(message(quiet_hours=quiet))
    assert dropped.outcomes == [("m1", "skipped", "quiet_hours")]

    sender = FakeSender()
    held = Harness(sender)
    [record] = await held.send(message(quiet_hours=quiet.model_copy(update={"action": "hold"})))
    assert record.outcomes[0][1] == "sent"
    assert ("SendAt", "2027-01-15T14:00:00Z") in sender.requests[0]
    assert ("ScheduleType", "fixed") in sender.requests[0]


async def test_a_frequency_cap_skips_sends_beyond_its_limit() -> None:
    h = Harness(FakeSender())
    cap = FrequencyCap(limit=2, window_s=3600, scope="marketing")
    records = await h.send(*(message(frequency_cap=cap) for _ in range(3)))
    assert [r.outcomes[0][2] for r in records] == ["queued", "queued", "frequency_cap"]


async def test_a_drain_abandons_unstarted_sends_and_frees_their_dedup_claims() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    class SlowSender(FakeSender):
        async def send(self, params: tuple[tuple[str, str], ...]) -> SendResult:
            self.requests.append(params)
            started.set()
            await release.wait()
            return OK

    sender = SlowSender()
    h = Harness(sender)
    h.exchange.gate.limit = 1
    first, second = h.record(), h.record()
    h.dispatcher.submit(first, message("+14155550001", dedup_key="a"))
    h.dispatcher.submit(second, message("+14155550002", dedup_key="b"))
    await started.wait()
    drain = asyncio.create_task(h.dispatcher.drain({("events", 0)}, timeout_s=5))
    await asyncio.sleep(0)
    release.set()
    assert await drain
    h.producer.poll(0)  # the ledger write of the finished send is acknowledged
    assert first.outcomes[0][1] == "sent", "the request on the wire was allowed to finish"
    assert second.outcomes == [], "the waiting one was abandoned, unsent and unfinished"
    assert len(sender.requests) == 1
    # The abandoned one had written its intent: whoever processes it next asks Twilio first.
    assert h.state.ledger.claim(ledger_key("m1", "b", "+14155550002"), 0, now=0).kind == "in_doubt"
    assert h.state.ledger.claim(ledger_key("m1", "a", "+14155550001"), 0, now=0).kind == "sent"


@pytest.mark.parametrize(("status", "expected"), [(None, "transport"), (429, "4xx"), (503, "5xx")])
async def test_twilio_answers_are_counted_by_status_class(status: int | None, expected: str) -> None:
    h = Harness(FakeSender(twilio_error(ErrorClass.PERMANENT, 21211, status)))
    await h.send(message())
    labels = {"status_class": expected, "code": "21211"}
    assert h.metrics.registry.get_sample_value("kafka_twilio_twilio_requests_total", labels) == 1


async def test_a_failed_dead_letter_report_served_off_the_loop_is_retried_on_the_loop_not_raised() -> None:
    # The final producer flush serves delivery reports on the poll thread, where no loop runs.
    h = Harness(FakeSender(twilio_error(ErrorClass.PERMANENT, 21617)))
    reports: list[Callable[[Any, Any], None]] = []
    healthy = h.producer.produce

    def queue_only(topic: str, **kwargs: Any) -> None:
        if topic != "dlq":
            healthy(topic, **kwargs)
            return
        reports.append(kwargs["on_delivery"])

    h.producer.produce = queue_only  # type: ignore[method-assign]
    [record] = await h.send(message())
    [report] = reports

    finished = asyncio.Event()
    h.outcomes.on_done = lambda _record: finished.set()
    await asyncio.to_thread(report, RdKafkaError(RdKafkaError._MSG_TIMED_OUT), None)
    h.producer.produce = healthy  # type: ignore[method-assign]
    await asyncio.wait_for(until(lambda: h.producer.poll(0) >= 0 and finished.is_set()), timeout=10)
    assert record.outcomes == [("m1", "dead_lettered", "twilio_21617")], "written again, then finished"


async def test_a_twilio_5xx_is_counted_as_ambiguous_and_retried_then_sent() -> None:
    # What the client makes of a 503 from Twilio (the request reached Twilio: it may have been processed).
    sender = FakeSender(twilio_error(ErrorClass.MAY_HAVE_SENT, None, 503))
    h = Harness(sender)
    [record] = await h.send(message())
    assert record.outcomes == [("m1", "sent", "queued")]
    assert len(sender.requests) == 2
    assert h.metrics.registry.get_sample_value("kafka_twilio_ambiguous_sends_total") == 1
    assert h.metrics.registry.get_sample_value("kafka_twilio_retries_total", {"reason": "http_503"}) == 1


async def test_messages_to_one_recipient_wait_for_each_other_and_others_do_not() -> None:
    release = asyncio.Event()
    sender = FakeSender()
    sender.hold = release
    h = Harness(sender)
    first, second, other = h.record(), h.record(), h.record()
    h.dispatcher.submit(first, message("+14155550001", params=(("Body", "1"),)))
    h.dispatcher.submit(second, message("+14155550001", params=(("Body", "2"),)))
    h.dispatcher.submit(other, message("+14155550002", params=(("Body", "3"),)))
    await asyncio.wait_for(until(lambda: len(sender.requests) == 2), timeout=10)
    assert [dict(r)["Body"] for r in sender.requests] == ["1", "3"], "the second waits behind the first"
    release.set()
    await h.settle()
    assert [dict(r)["Body"] for r in sender.requests] == ["1", "3", "2"]


async def test_a_number_twilio_calls_invalid_is_skipped_as_invalid_number_not_dead_lettered() -> None:
    h = Harness(FakeSender(twilio_error(ErrorClass.PERMANENT, 21211)))
    [record] = await h.send(message("+447700900123", dedup_key="k"))
    assert record.outcomes == [("m1", "skipped", "invalid_number")]
    assert h.dead_letters() == []
    assert h.state.ledger.claim(ledger_key("m1", "k", "+447700900123"), 0, now=0).kind == "new", "released"
    assert [e.state for e in h.ledger()] == ["intent", "released"]


# -- exactly once ------------------------------------------------------------------------------------


async def test_an_intent_is_acknowledged_before_the_request_and_replaced_by_the_sent_entry_after_it() -> None:
    class Watching(FakeSender):
        async def send(self, params: tuple[tuple[str, str], ...]) -> SendResult:
            seen.append([e.state for e in h.ledger()])  # what Kafka holds when the request goes out
            return await super().send(params)

    seen: list[list[str]] = []
    h = Harness(Watching())
    [record] = await h.send(message(dedup_key="order:1"))
    assert seen == [["intent"]], "the intent was acknowledged before the request was written"
    assert [(e.state, bool(e.sid)) for e in h.ledger()] == [("intent", False), ("sent", True)]
    assert record.outcomes == [("m1", "sent", "queued")]
    assert h.metrics.registry.get_sample_value("kafka_twilio_intent_write_seconds_count") == 1


async def test_a_message_without_dedup_is_still_keyed_by_its_record_so_a_crash_cannot_send_it_twice() -> None:
    h = Harness(FakeSender())
    [record] = await h.send(message())
    key = ledger_key("m1", f"@events/0/{record.offset}", "+14155550123")
    assert h.state.ledger.claim(key, 0, now=0).kind == "sent"


async def test_the_same_dedup_key_is_sent_once() -> None:
    h = Harness(FakeSender())
    a, b = await h.send(message(dedup_key="order:1"), message(dedup_key="order:1"))
    assert a.outcomes[0][1] == "sent"
    assert b.outcomes == [("m1", "skipped", "duplicate")]
    assert [e.state for e in h.ledger()] == ["intent", "sent"]
    assert h.cluster_records("dlq") == []


@pytest.mark.parametrize("lost", [
    twilio_error(ErrorClass.MAY_HAVE_SENT, None, None),  # a read timeout after the request was written
    twilio_error(ErrorClass.MAY_HAVE_SENT, 20500, 500),  # a 5xx: Twilio may have processed it
])  # fmt: skip
async def test_a_lost_answer_for_a_message_twilio_created_ends_sent_with_its_sid_and_is_not_resent(
    lost: TwilioError,
) -> None:
    sender = FakeSender(Accepted(lost))
    h = Harness(sender)
    [record] = await h.send(message(dedup_key="k"))
    assert record.outcomes == [("m1", "sent", "queued")]
    assert len(sender.requests) == 1, "asked Twilio instead of sending again"
    assert h.ledger()[-1].sid == sender.created[0]["sid"]
    assert h.metrics.registry.get_sample_value("kafka_twilio_reconciled_total", {"result": "found"}) == 1


async def test_a_lost_answer_for_a_message_twilio_does_not_have_is_sent_once_more() -> None:
    sender = FakeSender(twilio_error(ErrorClass.MAY_HAVE_SENT, None, None))  # it never reached Twilio
    h = Harness(sender)
    [record] = await h.send(message(dedup_key="k"))
    assert record.outcomes == [("m1", "sent", "queued")]
    assert len(sender.requests) == 2
    assert len(sender.created) == 1
    assert h.metrics.registry.get_sample_value("kafka_twilio_reconciled_total", {"result": "not_found"}) == 1


async def test_when_twilio_cannot_be_asked_the_message_is_dead_lettered_ambiguous_and_its_intent_kept() -> (
    None
):
    sender = FakeSender(Accepted(twilio_error(ErrorClass.MAY_HAVE_SENT, None, None)))
    sender.list_errors = [twilio_error(ErrorClass.PERMANENT, 20403, 403)] * 10  # the key may not list
    h = Harness(sender)
    [record] = await h.send(message(dedup_key="k"))
    assert record.outcomes == [("m1", "dead_lettered", "ambiguous")]
    assert [e.state for e in h.ledger()] == ["intent"], "whoever replays it asks Twilio again"
    assert h.metrics.registry.get_sample_value("kafka_twilio_reconciled_total", {"result": "unresolved"}) == 1


async def test_an_intent_restored_after_a_crash_is_settled_by_twilio_s_list_before_anything_is_sent() -> None:
    # Before the crash: the intent was acknowledged and Twilio created the message; the answer was lost.
    sender = FakeSender()
    sender.clock = lambda: 1_800_000_000.0 - 5
    await sender.send((("To", "+14155550123"), ("MessagingServiceSid", "MG" + "1" * 32), ("Body", "hi")))
    sender.requests.clear()
    h = Harness(sender)
    key = ledger_key("m1", "k", "+14155550123")
    intent = LedgerEntry(key, 1_800_000_000.0 - 10, 1_800_003_600.0, "r", "m1", state="intent")
    h.state.ledger.load(0, [intent], now=1_800_000_000.0)
    assert h.state.ledger.restored_in_doubt == {key}
    [record] = await h.send(message(dedup_key="k"))
    assert record.outcomes == [("m1", "sent", "queued")]
    assert sender.requests == [], "found at Twilio: not sent again"
    assert h.state.ledger.restored_in_doubt == set()

    # An intent whose message Twilio never got is sent, once.
    again = Harness(FakeSender())
    again.state.ledger.load(0, [intent], now=1_800_000_000.0)
    [record] = await again.send(message(dedup_key="k"))
    assert record.outcomes == [("m1", "sent", "queued")]
    assert len(again.exchange.twilio.requests) == 1  # type: ignore[attr-defined]


async def test_identical_messages_to_one_recipient_are_matched_by_count_oldest_first() -> None:
    sender = FakeSender()
    sender.clock = lambda: 1_800_000_000.0 - 15  # between the two intents
    params = (("To", "+14155550123"), ("MessagingServiceSid", "MG" + "1" * 32), ("Body", "hi"))
    await sender.send(params)  # only one of the two in-doubt intents had reached Twilio
    sender.requests.clear()
    h = Harness(sender)
    # Both intents are older than the one message Twilio has: the count decides, oldest first.
    restored = [
        LedgerEntry(
            ledger_key("m1", name, "+14155550123"),
            1_800_000_000.0 - age,
            1_800_003_600.0,
            "r",
            "m1",
            state="intent",
        )
        for name, age in (("first", 20), ("second", 18))
    ]
    h.state.ledger.load(0, restored, now=1_800_000_000.0)
    first, second = await h.send(message(dedup_key="first"), message(dedup_key="second"))
    assert first.outcomes == second.outcomes == [("m1", "sent", "queued")]
    assert len(sender.requests) == 1, "the one Twilio has went to the oldest intent; the other was sent"


async def test_an_outage_is_waited_out_without_spending_retry_budgets_or_dead_lettering() -> None:
    sender = FakeSender()
    sender.down = True
    h = Harness(sender)
    records = [h.record() for _ in range(12)]
    for n, record in enumerate(records):
        h.dispatcher.submit(record, message(f"+141555501{n:02d}"))
    await asyncio.wait_for(until(lambda: h.exchange.breaker.open), timeout=10)
    assert all(r.outcomes == [] for r in records)
    sender.down = False
    h.exchange.breaker.success()  # what the probe does when Twilio answers again
    await h.settle()
    assert all(r.outcomes == [("m1", "sent", "queued")] for r in records)
    assert h.dead_letters() == []


async def test_a_ledger_write_kafka_refuses_is_tried_again_and_the_record_waits_for_it() -> None:
    h = Harness(FakeSender())
    refusals = [BufferError("Local: Queue full")] * 2
    h.producer.refuse = lambda topic, value: refusals.pop() if topic == "sent" and refusals else None
    [record] = await h.send(message(dedup_key="order-1"))
    assert record.outcomes == [("m1", "sent", "queued")]
    assert [e.state for e in h.ledger()] == ["intent", "sent"]
    assert 0.1 in h.sleeps, "backed off while Kafka refused"
    assert 0.2 in h.sleeps


@pytest.mark.parametrize(
    "surprise", [ValueError("201 body is not JSON"), KeyError("sid"), RuntimeError("transport bug")]
)
async def test_an_unexpected_error_from_the_sender_is_settled_with_twilio_instead_of_stalling_the_record(
    surprise: Exception,
) -> None:
    class SurprisingSender(FakeSender):
        async def send(self, params: tuple[tuple[str, str], ...]) -> SendResult:
            self.requests.append(params)
            self._create(params)  # it did reach Twilio
            raise surprise

    sender = SurprisingSender()
    h = Harness(sender)
    [record] = await h.send(message(dedup_key="order-1"))
    assert record.outcomes == [("m1", "sent", "queued")], "found at Twilio: the record reaches an outcome"
    assert len(sender.requests) == 1, "it had been sent: never repeated"
