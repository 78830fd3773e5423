"""The gates as pure verdicts over a given time: consent, quiet hours in the recipient's zone, caps."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from consumer.events.recipients import Channel, Consent
from consumer.mappings.model import QuietHours
from consumer.pipeline.gates import capped, consent_skip, quiet_hours, quiet_until
from consumer.pipeline.message import FrequencyCap, OutboundMessage
from consumer.state.caps import FrequencyCaps
from consumer.zones import zone_or_default as zone
from tests.fakes import store

LA = zone("America/Los_Angeles")


@pytest.mark.parametrize(
    ("now_utc", "start", "end", "expected_end_utc"),
    [
        # 22:30 in Los Angeles (PST, UTC-8) is inside 21:00-09:00: held until 09:00 local next day.
        (
            datetime(2026, 11, 28, 6, 30, tzinfo=UTC),
            time(21),
            time(9),
            datetime(2026, 11, 28, 17, 0, tzinfo=UTC),
        ),
        # 03:00 local, after midnight: still inside, ends 09:00 the same local day.
        (
            datetime(2026, 11, 28, 11, 0, tzinfo=UTC),
            time(21),
            time(9),
            datetime(2026, 11, 28, 17, 0, tzinfo=UTC),
        ),
        # 12:00 local: outside.
        (datetime(2026, 11, 28, 20, 0, tzinfo=UTC), time(21), time(9), None),
        # A period that does not wrap midnight: 12:00-14:00, now 13:00 local.
        (
            datetime(2026, 11, 28, 21, 0, tzinfo=UTC),
            time(12),
            time(14),
            datetime(2026, 11, 28, 22, 0, tzinfo=UTC),
        ),
        # Exactly at the end is outside; exactly at the start is inside.
        (datetime(2026, 11, 28, 17, 0, tzinfo=UTC), time(21), time(9), None),
        (
            datetime(2026, 11, 29, 5, 0, tzinfo=UTC),
            time(21),
            time(9),
            datetime(2026, 11, 29, 17, 0, tzinfo=UTC),
        ),
        # start == end means no quiet hours at all.
        (datetime(2026, 11, 28, 6, 30, tzinfo=UTC), time(9), time(9), None),
    ],
)
def test_quiet_hours_are_read_in_the_recipients_time_zone(
    now_utc: datetime, start: time, end: time, expected_end_utc: datetime | None
) -> None:
    assert quiet_until(now_utc, LA, start, end) == expected_end_utc


def test_quiet_hours_end_respects_a_daylight_saving_change() -> None:
    # 2026-03-08 02:00 is the US spring-forward; 23:00 PST on the 7th ends at 09:00 PDT (UTC-7).
    now = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert quiet_until(now, LA, time(21), time(9)) == datetime(2026, 3, 8, 16, 0, tzinfo=UTC)


def message(**changes: object) -> OutboundMessage:
    base: dict[str, object] = {
        "mapping_id": "m1", "channel": Channel.SMS, "to": "+14155550123", "recipient": "+14155550123",
        "sender": "MG" + "1" * 32, "sender_kind": "messaging_service",
        "params": (("To", "+14155550123"), ("MessagingServiceSid", "MG" + "1" * 32), ("Body", "hi")),
        "segments": 1, "dedup_key": "", "dedup_window_s": 0.0, "timezone": "Europe/Paris",
        "quiet_hours": QuietHours(start=time(21), end=time(9), action="hold", default_timezone="UTC"),
        "frequency_cap": None,
    }  # fmt: skip
    return OutboundMessage(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("consent", "policy", "reason"),
    [
        (Consent.SUBSCRIBED, "require_subscribed", None),
        (Consent.UNKNOWN, "require_subscribed", "consent_unknown"),
        (Consent.UNKNOWN, "allow_unknown", None),
        (Consent.UNSUBSCRIBED, "allow_unknown", "unsubscribed"),
        (Consent.OTHER, "allow_unknown", "not_subscribed"),
        (Consent.UNSUBSCRIBED, "ignore", None),
    ],
)
def test_consent_skips_follow_the_mappings_policy(consent: Consent, policy: str, reason: str | None) -> None:
    skip = consent_skip("m1", consent, policy)
    assert (skip.reason if skip else None) == reason


def test_quiet_hours_at_a_time_are_held_by_twilio_when_a_messaging_service_can_schedule() -> None:
    # 03:30 UTC is 04:30 in Paris (CET): inside 21:00-09:00, which ends at 08:00 UTC.
    at = datetime(2026, 12, 2, 3, 30, tzinfo=UTC)
    verdict = quiet_hours(message(), at)
    assert verdict is not None
    assert (verdict.until, verdict.drop, verdict.schedule) == (
        datetime(2026, 12, 2, 8, 0, tzinfo=UTC),
        False,
        True,
    )


def test_quiet_hours_hold_in_memory_when_the_sender_cannot_schedule_or_the_end_is_too_close() -> None:
    at = datetime(2026, 12, 2, 3, 30, tzinfo=UTC)
    long_code = quiet_hours(message(sender_kind="long_code"), at)
    assert long_code is not None
    assert not long_code.schedule
    soon = quiet_hours(message(), datetime(2026, 12, 2, 7, 50, tzinfo=UTC))  # 10 minutes before the end
    assert soon is not None
    assert not soon.schedule


def test_quiet_hours_drop_and_outside_them_nothing_happens() -> None:
    drop = message(quiet_hours=QuietHours(start=time(21), end=time(9), action="drop", default_timezone="UTC"))
    verdict = quiet_hours(drop, datetime(2026, 12, 2, 3, 30, tzinfo=UTC))
    assert verdict is not None
    assert verdict.drop
    assert quiet_hours(drop, datetime(2026, 12, 2, 12, 0, tzinfo=UTC)) is None
    assert quiet_hours(message(quiet_hours=None), datetime(2026, 12, 2, 3, 30, tzinfo=UTC)) is None


def test_a_message_over_its_frequency_cap_is_capped() -> None:
    caps = FrequencyCaps(store(), horizon_s=60)
    capped_message = message(frequency_cap=FrequencyCap(limit=1, window_s=60, scope="marketing"))
    assert not capped(capped_message, caps, now=0)
    from consumer.pipeline.gates import frequency_key

    caps.add(frequency_key(capped_message), 0)
    assert capped(capped_message, caps, now=10)
    assert not capped(message(), caps, now=10), "no cap, never capped"
