"""The event → Twilio delay histogram: measured from the record's Kafka timestamp and the event's own
timestamp to Twilio accepting the message, per mapping, and only for messages Twilio accepted."""

from __future__ import annotations

from consumer.errors import ErrorClass
from consumer.mappings.templating import parse_time
from consumer.metrics import Metrics
from tests.fake_twilio import FakeTwilio, twilio_error
from tests.unit.service.test_delivery import Harness, message

NOW = 1_800_000_000.0


def delay(metrics: Metrics, mapping: str, clock: str) -> tuple[float, float]:
    """(count, sum) of send_delay_seconds for one mapping and clock."""
    labels = {"mapping": mapping, "clock": clock}
    registry = metrics.registry
    count = registry.get_sample_value("kafka_twilio_send_delay_seconds_count", labels) or 0.0
    total = registry.get_sample_value("kafka_twilio_send_delay_seconds_sum", labels) or 0.0
    return count, total


async def test_delay_is_measured_from_kafka_and_from_the_event_to_twilios_answer() -> None:
    h = Harness(FakeTwilio(), clock=lambda: NOW)
    record = h.record()
    record.timestamp_ms = int((NOW - 0.040) * 1000)  # produced 40 ms before Twilio answered
    record.event_time = "2027-01-15T08:00:00Z"  # the event happened long before (a backfill)
    h.dispatcher.submit(record, message(mapping_id="otp"))
    await h.settle()

    count, total = delay(h.metrics, "otp", "kafka")
    assert count == 1
    assert abs(total - 0.040) < 0.002
    count, total = delay(h.metrics, "otp", "event")
    assert count == 1
    assert abs(total - (NOW - parse_time("2027-01-15T08:00:00Z").timestamp())) < 0.002  # type: ignore[union-attr]


async def test_no_timestamps_no_observation_and_a_refused_message_is_not_a_delay() -> None:
    h = Harness(FakeTwilio(), clock=lambda: NOW)
    await h.send(message(mapping_id="plain"))  # no Kafka timestamp, no event time
    assert delay(h.metrics, "plain", "kafka") == (0.0, 0.0)
    assert delay(h.metrics, "plain", "event") == (0.0, 0.0)

    refusing = FakeTwilio(twilio_error(ErrorClass.RECIPIENT, 21211))
    h = Harness(refusing, clock=lambda: NOW)
    record = h.record()
    record.timestamp_ms = int(NOW * 1000) - 10
    h.dispatcher.submit(record, message(mapping_id="bad"))
    await h.settle()
    assert record.outcomes[0][1] != "sent"
    assert delay(h.metrics, "bad", "kafka") == (0.0, 0.0)


def test_event_times_are_read_as_iso_8601_in_utc_unless_they_name_a_zone() -> None:
    def epoch(text: str) -> float | None:
        moment = parse_time(text)
        return None if moment is None else moment.timestamp()

    assert epoch("1970-01-01T00:01:00Z") == 60.0
    assert epoch("1970-01-01T00:01:00") == 60.0
    assert epoch("1970-01-01T01:01:00+01:00") == 60.0
    assert epoch("yesterday") is None
