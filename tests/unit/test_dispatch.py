"""The send stage's rules with an in-memory sender and producer (no network, no real sleeping)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from consumer.errors import ErrorClass, TwilioError
from consumer.events.recipients import Channel
from consumer.kafka.deadletter import DeadLetterWriter, parse_dead_letter_headers
from consumer.mappings.model import QuietHours
from consumer.metrics import Metrics
from consumer.pipeline.pacing import AdaptiveLimit, SenderLimits
from consumer.pipeline.render import FrequencyCap, OutboundMessage
from consumer.service.dispatcher import Dispatcher, RecordState
from consumer.state.ledger import DedupStore, ledger_key
from consumer.twilio.client import SendResult

OK = SendResult(sid="SM" + "0" * 32, status="queued", num_segments=1, error_code=None, latency_s=0.01)


def twilio_error(cls: ErrorClass, code: int | None = None, status: int | None = 400) -> TwilioError:
    return TwilioError(f"error {code}", error_class=cls, code=code, status=status)


class FakeSender:
    """Answers from a script (errors are raised), then OK; records every request."""

    def __init__(self, *script: TwilioError | SendResult) -> None:
        self.script = list(script)
        self.requests: list[tuple[tuple[str, str], ...]] = []

    async def send(self, params: tuple[tuple[str, str], ...]) -> SendResult:
        self.requests.append(params)
        await asyncio.sleep(0)
        answer = self.script.pop(0) if self.script else OK
        if isinstance(answer, TwilioError):
            raise answer
        return answer


class FakeProducer:
    """Acknowledges every record at once, like a healthy broker."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.records.append({"topic": topic, **kwargs})
        kwargs["on_delivery"](None, None)

    def poll(self, _timeout: float = 0) -> int:
        return 0


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
        self.producer = FakeProducer()
        self.done: list[RecordState] = []
        self.sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            await asyncio.sleep(0)

        self.dispatcher = Dispatcher(
            sender=sender, metrics=self.metrics,
            dedup=DedupStore({}, self.producer, "sent", partitions=1),  # type: ignore[arg-type]
            dead_letters=DeadLetterWriter(self.producer, "dlq"), limits=SenderLimits(),
            adaptive=AdaptiveLimit(8, minimum=1), max_retries=3, retry_base_s=0.1, retry_cap_s=1.0,
            on_record_done=self.done.append, clock=clock, sleep=sleep, rand=lambda: 0.5,
        )  # fmt: skip
        self.offset = 0

    async def send(self, *messages: OutboundMessage) -> list[RecordState]:
        records = []
        for msg in messages:
            record = RecordState("events", 0, self.offset, b"k", b"v", [("h", b"1")], remaining=1)
            self.offset += 1
            self.dispatcher.submit(record, msg)
            records.append(record)
        await settle(self.dispatcher)
        return records

    def dead_letters(self) -> list[dict[str, Any]]:
        return [r for r in self.producer.records if r["topic"] == "dlq"]


async def settle(dispatcher: Dispatcher) -> None:
    """Wait until every submitted send has run to its end."""
    while tasks := dispatcher.in_flight_tasks():
        await asyncio.gather(*tasks, return_exceptions=True)


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
        twilio_error(ErrorClass.RETRYABLE, 20429, 429), twilio_error(ErrorClass.RETRYABLE, None, 503)
    )
    h = Harness(sender)
    [record] = await h.send(message())
    assert record.outcomes[0][1] == "sent"
    assert len(sender.requests) == 3
    assert h.sleeps == [0.05, 0.1]  # full jitter with rand=0.5: half of 0.1 * 2**attempt
    assert h.metrics.registry.get_sample_value("kafka_twilio_retries_total", {"reason": "twilio_20429"}) == 1
    assert h.metrics.registry.get_sample_value("kafka_twilio_concurrency_limit") < 8, "429 lowered the limit"


async def test_a_spent_retry_budget_dead_letters_the_record() -> None:
    sender = FakeSender(*[twilio_error(ErrorClass.RETRYABLE, 20429, 429)] * 4)
    h = Harness(sender)
    [record] = await h.send(message())
    assert record.outcomes == [("m1", "dead_lettered", "retries_exhausted")]
    assert len(sender.requests) == 4
    [dead] = h.dead_letters()
    info = parse_dead_letter_headers(dead["headers"])
    assert (info.reason, info.twilio_code, info.attempts) == ("retries_exhausted", 20429, 4)


async def test_a_timeout_after_the_request_was_written_is_dead_lettered_not_resent() -> None:
    sender = FakeSender(twilio_error(ErrorClass.MAY_HAVE_SENT, None, None))
    h = Harness(sender)
    [record] = await h.send(message())
    assert record.outcomes == [("m1", "dead_lettered", "ambiguous")]
    assert len(sender.requests) == 1
    assert h.metrics.registry.get_sample_value("kafka_twilio_ambiguous_sends_total") == 1


async def test_a_recipient_who_replied_stop_is_dead_lettered_once_and_then_suppressed() -> None:
    h = Harness(FakeSender(twilio_error(ErrorClass.RECIPIENT, 21610)))
    first, second = await h.send(message(), message())
    assert first.outcomes == [("m1", "dead_lettered", "twilio_21610")]
    assert second.outcomes == [("m1", "skipped", "suppressed")]


async def test_a_configuration_error_halts_sending_until_resumed_and_loses_nothing() -> None:
    sender = FakeSender(twilio_error(ErrorClass.CONFIGURATION, 20003, 401))
    h = Harness(sender)
    record = RecordState("events", 0, 0, b"k", b"v", None, remaining=1)
    h.dispatcher.submit(record, message())
    for _ in range(20):
        await asyncio.sleep(0)
    assert h.dispatcher.halted
    assert record.outcomes == [], "not dead-lettered: a bad key must not burn the backlog"
    h.dispatcher.resume()
    await settle(h.dispatcher)
    assert record.outcomes == [("m1", "sent", "queued")]
    assert len(sender.requests) == 2


async def test_the_same_dedup_key_is_sent_once_and_written_to_the_ledger() -> None:
    h = Harness(FakeSender())
    a, b = await h.send(message(dedup_key="order:1"), message(dedup_key="order:1"))
    assert a.outcomes[0][1] == "sent"
    assert b.outcomes == [("m1", "skipped", "duplicate")]
    assert [r["topic"] for r in h.producer.records] == ["sent"]


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
    h.dispatcher.gate.limit = 1
    first = RecordState("events", 0, 0, None, None, None, remaining=1)
    second = RecordState("events", 0, 1, None, None, None, remaining=1)
    h.dispatcher.submit(first, message("+14155550001", dedup_key="a"))
    h.dispatcher.submit(second, message("+14155550002", dedup_key="b"))
    await started.wait()
    drain = asyncio.create_task(h.dispatcher.drain({("events", 0)}, timeout_s=5))
    await asyncio.sleep(0)
    release.set()
    assert await drain
    assert first.outcomes[0][1] == "sent", "the request on the wire was allowed to finish"
    assert second.outcomes == [], "the waiting one was abandoned, unsent and unfinished"
    assert len(sender.requests) == 1
    assert h.dispatcher.dedup is not None
    assert h.dispatcher.dedup.ledger.claim(ledger_key("m1", "b", "+14155550002"), 0, now=0), "claim released"
    assert not h.dispatcher.dedup.ledger.claim(ledger_key("m1", "a", "+14155550001"), 0, now=0), "sent: kept"


@pytest.mark.parametrize(("status", "expected"), [(None, "transport"), (429, "4xx"), (503, "5xx")])
async def test_twilio_answers_are_counted_by_status_class(status: int | None, expected: str) -> None:
    h = Harness(FakeSender(twilio_error(ErrorClass.PERMANENT, 21211, status)))
    await h.send(message())
    labels = {"status_class": expected, "code": "21211"}
    assert h.metrics.registry.get_sample_value("kafka_twilio_twilio_requests_total", labels) == 1


@pytest.mark.parametrize(
    "surprise", [ValueError("201 body is not JSON"), KeyError("sid"), RuntimeError("transport bug")]
)
async def test_an_unexpected_error_from_the_sender_dead_letters_the_record_instead_of_stalling_it(
    surprise: Exception,
) -> None:
    class SurprisingSender(FakeSender):
        async def send(self, params: tuple[tuple[str, str], ...]) -> SendResult:
            self.requests.append(params)
            raise surprise

    sender = SurprisingSender()
    h = Harness(sender)
    [record] = await h.send(message(dedup_key="order-1"))
    assert record.outcomes == [("m1", "dead_lettered", "ambiguous")], "the record reaches an outcome"
    assert h.done == [record]
    assert len(sender.requests) == 1, "it may have been sent: never repeated blindly"
    [dead] = h.dead_letters()
    assert parse_dead_letter_headers(dead["headers"]).reason == "ambiguous"


async def test_a_sent_message_finishes_even_when_the_ledger_write_is_refused_by_a_full_producer() -> None:
    h = Harness(FakeSender())

    def full(topic: str, **kwargs: Any) -> None:
        raise BufferError("Local: Queue full")

    h.producer.produce = full  # type: ignore[method-assign]
    [record] = await h.send(message(dedup_key="order-1"))
    assert record.outcomes == [("m1", "sent", "queued")], "sent is sent; only the ledger write failed"
    assert h.done == [record]


async def test_a_failed_dead_letter_report_served_off_the_loop_is_retried_on_the_loop_not_raised() -> None:
    # The final producer flush serves delivery reports on the poll thread, where no loop runs.
    h = Harness(FakeSender(twilio_error(ErrorClass.PERMANENT, 21211)))
    reports: list[Callable[[Any, Any], None]] = []
    healthy = h.producer.produce

    def queue_only(topic: str, **kwargs: Any) -> None:
        reports.append(kwargs["on_delivery"])

    h.producer.produce = queue_only  # type: ignore[method-assign]
    [record] = await h.send(message())
    [report] = reports

    class BrokerDown:
        def str(self) -> str:
            return "Message timed out"

        def name(self) -> str:
            return "_MSG_TIMED_OUT"

    finished = asyncio.Event()
    h.dispatcher.on_record_done = lambda _record: finished.set()
    await asyncio.to_thread(report, BrokerDown(), None)
    h.producer.produce = healthy  # type: ignore[method-assign]
    await asyncio.wait_for(finished.wait(), timeout=3)
    assert record.outcomes == [("m1", "dead_lettered", "twilio_21211")], "written again, then finished"
