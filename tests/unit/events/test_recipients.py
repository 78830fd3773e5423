"""Recipients per channel: where addresses are found, E.164 normalisation, consent state."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.events.model import Event
from consumer.events.recipients import (
    DEFAULT_SOURCES,
    Channel,
    Consent,
    Recipient,
    address_candidates,
    consent_of,
    find_recipient,
    normalize_phone,
)


def _event(**data: Any) -> Event:
    return Event.from_segment({"type": "track", "messageId": "m", "userId": "u", **data})


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550123", "US", "+14155550123"),
        ("(415) 555-0123", "US", "+14155550123"),
        ("415.555.0123", "US", "+14155550123"),
        ("1-415-555-0123", "US", "+14155550123"),
        (" whatsapp:+14155550123 ", "US", "+14155550123"),
        ("tel:+14155550123", "US", "+14155550123"),
        ("07911 123456", "GB", "+447911123456"),
        ("07911 123456", "gb", "+447911123456"),
        ("+447911123456", "US", "+447911123456"),
        ("07911 123456", "US", None),
        ("12345", "US", None),
        ("not a number", "US", None),
        ("", "US", None),
        ("+1" + "5" * 80, "US", None),
    ],
)
def test_normalize_phone_returns_e164_or_none(raw: str, region: str, expected: str | None) -> None:
    assert normalize_phone(raw, region) == expected


def test_first_source_with_a_valid_number_wins() -> None:
    event = _event(
        properties={"phone": "+14155550101"},
        traits={"phone": "+14155550102"},
        context={"traits": {"phone": "+14155550103"}},
    )
    assert find_recipient(event, Channel.SMS) == Recipient(
        "+14155550101", Channel.SMS, Consent.UNKNOWN, "properties.phone"
    )


def test_sources_can_be_reordered_per_mapping() -> None:
    event = _event(properties={"phone": "+14155550101"}, context={"traits": {"phone": "+14155550103"}})
    found = find_recipient(event, Channel.SMS, sources=["context.traits.phone", "properties.phone"])
    assert found is not None
    assert (found.address, found.source) == ("+14155550103", "context.traits.phone")


def test_an_invalid_number_is_passed_over_but_still_visible_as_a_candidate() -> None:
    event = _event(properties={"phone": "555"}, traits={"phone": "(415) 555-0123"})
    found = find_recipient(event, Channel.SMS)
    assert found is not None
    assert found.source == "traits.phone"
    assert next(iter(address_candidates(event, Channel.SMS))) == ("properties.phone", "555")


def test_no_address_gives_none() -> None:
    assert find_recipient(_event(properties={"email": "a@example.com"}), Channel.SMS) is None


def test_default_region_applies_to_national_numbers() -> None:
    event = _event(properties={"phone": "07911 123456"})
    assert find_recipient(event, Channel.SMS) is None
    found = find_recipient(event, Channel.SMS, default_region="GB")
    assert found is not None
    assert found.address == "+447911123456"


def test_external_ids_prefer_the_entry_of_the_channel() -> None:
    event = _event(
        external_ids=[
            {"id": "+14155550101", "type": "phone", "channelType": "sms", "isSubscribed": True},
            {"id": "+14155550102", "type": "phone", "channelType": "whatsapp", "isSubscribed": True},
        ]
    )
    sms, whatsapp = find_recipient(event, Channel.SMS), find_recipient(event, Channel.WHATSAPP)
    assert sms is not None
    assert sms.address == "+14155550101"
    assert sms.consent is Consent.SUBSCRIBED
    assert whatsapp is not None
    assert whatsapp.address == "+14155550102"
    assert whatsapp.consent is Consent.SUBSCRIBED


def test_dotted_paths_reach_nested_and_top_level_keys() -> None:
    event = _event(properties={"contact": {"mobile": "+14155550123"}})
    found = find_recipient(event, Channel.SMS, sources=["properties.contact.mobile"])
    assert found is not None
    assert found.source == "properties.contact.mobile"


@pytest.mark.parametrize(
    ("is_subscribed", "consent"),
    [
        (True, Consent.SUBSCRIBED),
        ("true", Consent.SUBSCRIBED),
        ("Subscribed", Consent.SUBSCRIBED),
        (False, Consent.UNSUBSCRIBED),
        ("FALSE", Consent.UNSUBSCRIBED),
        ("unsubscribed", Consent.UNSUBSCRIBED),
        (None, Consent.UNKNOWN),
        ("did_not_subscribe", Consent.OTHER),
        (1, Consent.OTHER),
    ],
)
def test_external_ids_consent_is_read_case_insensitively(is_subscribed: Any, consent: Consent) -> None:
    event = _event(external_ids=[{"id": "+14155550123", "type": "PHONE", "channelType": "SMS",
                                  "isSubscribed": is_subscribed}])  # fmt: skip
    assert consent_of(event, Channel.SMS, "+14155550123") is consent


@pytest.mark.parametrize(
    ("status", "consent"),
    [
        ("SUBSCRIBED", Consent.SUBSCRIBED),
        ("UNSUBSCRIBED", Consent.UNSUBSCRIBED),
        ("DID_NOT_SUBSCRIBE", Consent.OTHER),
        (None, Consent.UNKNOWN),
    ],
)
def test_messaging_subscriptions_status_is_read_case_insensitively(status: Any, consent: Consent) -> None:
    event = _event(
        context={"messaging_subscriptions": [{"key": "+14155550123", "type": "sms", "status": status}]}
    )
    assert consent_of(event, Channel.SMS, "+14155550123") is consent


def test_sms_and_whatsapp_subscriptions_are_separate_for_one_number() -> None:
    event = _event(
        context={"messaging_subscriptions": [
            {"key": "+14155550123", "type": "SMS", "status": "SUBSCRIBED"},
            {"key": "+14155550123", "type": "WHATSAPP", "status": "UNSUBSCRIBED"},
        ]}
    )  # fmt: skip
    assert consent_of(event, Channel.SMS, "+14155550123") is Consent.SUBSCRIBED
    assert consent_of(event, Channel.WHATSAPP, "+14155550123") is Consent.UNSUBSCRIBED
    assert consent_of(event, Channel.MMS, "+14155550123") is Consent.SUBSCRIBED  # MMS rides on SMS


def test_consent_belongs_to_the_number_it_names() -> None:
    event = _event(
        external_ids=[{"id": "+14155550999", "type": "phone", "channelType": "sms", "isSubscribed": True}]
    )
    assert consent_of(event, Channel.SMS, "+14155550123") is Consent.UNKNOWN


def test_consent_matches_numbers_written_differently() -> None:
    event = _event(
        context={
            "messaging_subscriptions": [{"key": "(415) 555-0123", "type": "SMS", "status": "subscribed"}]
        }
    )
    assert consent_of(event, Channel.SMS, "+14155550123") is Consent.SUBSCRIBED


def test_a_definite_state_beats_an_unknown_one() -> None:
    event = _event(
        external_ids=[{"id": "+14155550123", "type": "phone", "channelType": "sms", "isSubscribed": None}],
        context={
            "messaging_subscriptions": [{"key": "+14155550123", "type": "SMS", "status": "UNSUBSCRIBED"}]
        },
    )
    assert consent_of(event, Channel.SMS, "+14155550123") is Consent.UNSUBSCRIBED


def test_messenger_addresses_are_raw_ids() -> None:
    event = _event(external_ids=[{"id": "6543210987654321", "type": "messenger", "isSubscribed": True}])
    found = find_recipient(event, Channel.MESSENGER)
    assert found == Recipient("6543210987654321", Channel.MESSENGER, Consent.UNKNOWN, "external_ids")


def test_every_channel_has_default_sources() -> None:
    assert set(DEFAULT_SOURCES) == set(Channel)


def test_overlong_phone_values_are_rejected_without_being_cached() -> None:
    from consumer.events import recipients

    before = recipients._normalize_phone.cache_info().currsize
    assert normalize_phone("+1415555012" + "3" * 100_000) is None
    assert recipients._normalize_phone.cache_info().currsize == before


@pytest.mark.parametrize(
    ("raw", "possible", "strict"),
    [
        ("+447700900123", "+447700900123", None),  # Ofcom's drama range: possible, not valid
        ("+1234567890", None, None),  # too short for +1: not even possible
        ("+19995550123", "+19995550123", None),  # area code 999 is unassigned, but the length is right
        ("+14155550123", "+14155550123", "+14155550123"),
    ],
)
def test_possible_numbers_are_kept_for_twilio_to_judge_and_strict_keeps_only_valid_ones(
    raw: str, possible: str | None, strict: str | None
) -> None:
    assert normalize_phone(raw, "US") == possible
    assert normalize_phone(raw, "US", strict=True) == strict


@pytest.mark.parametrize(
    ("channel", "expected"),
    [(Channel.SMS, "89757"), (Channel.MMS, "89757"), (Channel.WHATSAPP, None), (Channel.RCS, None)],
)
def test_short_codes_are_recipients_on_sms_and_mms_only(channel: Channel, expected: str | None) -> None:
    found = find_recipient(_event(properties={"phone": "89757"}), channel)
    assert (found.address if found else None) == expected
