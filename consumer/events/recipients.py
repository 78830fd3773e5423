"""Who an event is about, per channel, and whether they agreed to be messaged.

Addresses are searched in a configurable order of places (first hit wins); phone numbers are
normalised to E.164 with a default region. Consent is read from the Engage messaging shapes
(top-level `external_ids[].isSubscribed`, `context.messaging_subscriptions[].status`), matching
`type` / `channelType` / `status` case-insensitively, as Segment's own Engage SMS sender did.
Pure: no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

from consumer.events.model import JSON, Event
from consumer.events.phones import parse_phone


class Channel(StrEnum):
    """A Twilio messaging channel."""

    SMS = "sms"
    MMS = "mms"
    WHATSAPP = "whatsapp"
    RCS = "rcs"
    MESSENGER = "messenger"


class Consent(StrEnum):
    """Subscription state of one address on one channel."""

    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    UNKNOWN = "unknown"  # no subscription record, or a null one
    OTHER = "other"  # any other status, e.g. DID_NOT_SUBSCRIBE: never send


@dataclass(frozen=True)
class Recipient:
    """An address found on an event, with its consent state on the channel."""

    address: str  # E.164 for phone channels; the raw user id for messenger
    channel: Channel
    consent: Consent
    source: str  # where it was found, e.g. "properties.phone", "external_ids"


PHONE_CHANNELS = frozenset({Channel.SMS, Channel.MMS, Channel.WHATSAPP, Channel.RCS})
#: Channels whose recipient may be a short code (Segment's To rule for SMS/MMS: ^[1-9]\d{4,5}$).
SHORT_CODE_CHANNELS = frozenset({Channel.SMS, Channel.MMS})
SHORT_CODE = re.compile(r"[1-9]\d{4,5}")
EXTERNAL_IDS = "external_ids"
CONTEXT_EXTERNAL_IDS = "context.externalIds"
_PHONE_SOURCES = (
    "properties.phone",
    "traits.phone",
    "context.traits.phone",
    EXTERNAL_IDS,
    CONTEXT_EXTERNAL_IDS,
)

#: Default search order per channel (a mapping may override it).
DEFAULT_SOURCES: Mapping[Channel, tuple[str, ...]] = {
    Channel.SMS: _PHONE_SOURCES,
    Channel.MMS: _PHONE_SOURCES,
    Channel.WHATSAPP: _PHONE_SOURCES,
    Channel.RCS: _PHONE_SOURCES,
    Channel.MESSENGER: (
        "properties.messenger_user_id",
        "traits.messenger_user_id",
        "context.traits.messenger_user_id",
        EXTERNAL_IDS,
        CONTEXT_EXTERNAL_IDS,
    ),
}

# Subscription `type` / `channelType` values that speak for a channel. MMS and RCS ride on the
# SMS subscription (Engage has no separate MMS/RCS subscription); WhatsApp is always separate.
_SUBSCRIPTION_TYPES: Mapping[Channel, frozenset[str]] = {
    Channel.SMS: frozenset({"sms"}),
    Channel.MMS: frozenset({"mms", "sms"}),
    Channel.RCS: frozenset({"rcs", "sms"}),
    Channel.WHATSAPP: frozenset({"whatsapp"}),
    Channel.MESSENGER: frozenset({"messenger"}),
}
# external_ids / context.externalIds `type` values that hold an address for the channel.
_ID_TYPES: Mapping[Channel, frozenset[str]] = {
    **{c: frozenset({"phone"}) for c in PHONE_CHANNELS},
    Channel.MESSENGER: frozenset({"messenger", "messenger_user_id", "facebook_messenger"}),
}
_PREFIXES = ("whatsapp:", "tel:", "sms:", "rcs:")


def normalize_phone(raw: str, default_region: str = "US", *, strict: bool = False) -> str | None:
    """Return `raw` as E.164 (`+14155550123`), or None when it is not a phone number.

    By default a number phonenumbers finds *possible* (the right length for its country) is kept
    even when its metadata does not know it as *valid* (new ranges, stale metadata, the Ofcom drama
    range +447700900xxx): Twilio judges it, and a 21211 answer becomes `skipped:invalid_number`.
    `strict` (CONSUMER_PHONE_VALIDATION=strict) also requires phonenumbers' own validity check.
    """
    # Bounded before the cache: it keeps its keys, and an event may carry a megabyte-long "phone".
    if len(raw) > 128:
        return None
    return _normalize_phone(raw, default_region, strict)


@functools.lru_cache(maxsize=65536)
def _normalize_phone(raw: str, default_region: str, strict: bool) -> str | None:
    text = raw.strip()
    lowered = text.lower()
    for prefix in _PREFIXES:
        if lowered.startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    if not text or len(text) > 64:
        return None
    try:
        number = parse_phone(text, default_region.upper() or None)
    except phonenumbers.NumberParseException:
        return None
    known = phonenumbers.is_valid_number(number) if strict else phonenumbers.is_possible_number(number)
    if not known:
        return None
    e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164


def find_recipient(
    event: Event,
    channel: Channel,
    *,
    default_region: str = "US",
    sources: Sequence[str] | None = None,
    strict: bool = False,
) -> Recipient | None:
    """Return the first valid address for `channel` in `sources` (default `DEFAULT_SOURCES`), or None.

    A value that is present but not a valid phone number is passed over; use `address_candidates`
    to tell "no address" from "only invalid addresses".
    """
    for source, raw in address_candidates(event, channel, sources=sources):
        address = normalize_address(raw, channel, default_region, strict=strict)
        if address is not None:
            consent = consent_of(event, channel, address, default_region=default_region, strict=strict)
            return Recipient(address=address, channel=channel, consent=consent, source=source)
    return None


def address_candidates(
    event: Event, channel: Channel, *, sources: Sequence[str] | None = None
) -> Iterator[tuple[str, str]]:
    """Yield `(source, raw value)` for every non-empty address in search order, valid or not."""
    for source in DEFAULT_SOURCES[channel] if sources is None else sources:
        if source == EXTERNAL_IDS:
            yield from ((source, v) for v in _ids_for(event.external_ids, channel))
        elif source == CONTEXT_EXTERNAL_IDS:
            yield from ((source, v) for v in _ids_for(_entries(event.context.get("externalIds")), channel))
        else:
            value = _path(event, source)
            if isinstance(value, str) and value.strip():
                yield source, value.strip()
            elif isinstance(value, int) and not isinstance(value, bool):
                yield source, str(value)


def consent_of(
    event: Event, channel: Channel, address: str, *, default_region: str = "US", strict: bool = False
) -> Consent:
    """Consent of `address` on `channel`: first definite state in external_ids, then subscriptions."""
    types = _SUBSCRIPTION_TYPES[channel]
    for entry in event.external_ids:
        kind = _lower(entry.get("channelType"))
        # An entry without channelType is a plain phone id: it speaks for SMS only.
        if (kind in types or (kind == "" and "sms" in types)) and _same(
            entry.get("id"), address, channel, default_region, strict
        ):
            state = _consent(entry.get("isSubscribed"))
            if state is not Consent.UNKNOWN:
                return state
    for entry in _entries(event.context.get("messaging_subscriptions")):
        if _lower(entry.get("type")) in types and _same(
            entry.get("key"), address, channel, default_region, strict
        ):
            state = _consent(entry.get("status"))
            if state is not Consent.UNKNOWN:
                return state
    return Consent.UNKNOWN


_CONSENT_WORDS: Mapping[str, Consent] = {
    "true": Consent.SUBSCRIBED,
    "subscribed": Consent.SUBSCRIBED,
    "false": Consent.UNSUBSCRIBED,
    "unsubscribed": Consent.UNSUBSCRIBED,
    "": Consent.UNKNOWN,
    "null": Consent.UNKNOWN,
    "unknown": Consent.UNKNOWN,
}


def _consent(value: JSON) -> Consent:
    """Map isSubscribed / status (bool, null or a word in any case) to a Consent."""
    if isinstance(value, bool):
        return Consent.SUBSCRIBED if value else Consent.UNSUBSCRIBED
    if value is None:
        return Consent.UNKNOWN
    if not isinstance(value, str):
        return Consent.OTHER
    return _CONSENT_WORDS.get(value.strip().lower(), Consent.OTHER)


def _ids_for(entries: Sequence[Mapping[str, JSON]], channel: Channel) -> Iterator[str]:
    """Ids of the channel's type, those tagged with the channel's own channelType first."""
    id_types, own = _ID_TYPES[channel], channel.value
    matching = [
        e for e in entries if _lower(e.get("type")) in id_types or _lower(e.get("channelType")) == own
    ]
    ordered = [e for e in matching if _lower(e.get("channelType")) == own] + [
        e for e in matching if _lower(e.get("channelType")) != own
    ]
    for entry in ordered:
        value = entry.get("id")
        if isinstance(value, str) and value.strip():
            yield value.strip()


def _same(value: JSON, address: str, channel: Channel, default_region: str, strict: bool) -> bool:
    if not isinstance(value, str):
        return False
    return (
        value.strip() == address
        or normalize_address(value, channel, default_region, strict=strict) == address
    )


def normalize_address(raw: str, channel: Channel, default_region: str, *, strict: bool = False) -> str | None:
    """The address `raw` names on `channel`: E.164, a short code (SMS and MMS, which Twilio can send
    to), or a Messenger user id; None when it is none of these."""
    if channel in SHORT_CODE_CHANNELS and SHORT_CODE.fullmatch(raw.strip()):
        return raw.strip()
    if channel in PHONE_CHANNELS:
        return normalize_phone(raw, default_region, strict=strict)
    return raw.strip() or None


def _path(event: Event, dotted: str) -> JSON:
    head, _, rest = dotted.partition(".")
    roots: Mapping[str, Mapping[str, JSON]] = {
        "properties": event.properties,
        "traits": event.traits,
        "context": event.context,
        "integrations": event.integrations,
    }
    value: JSON = roots.get(head, event.extra.get(head))
    for part in rest.split(".") if rest else ():
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _entries(value: JSON) -> list[Mapping[str, JSON]]:
    if not isinstance(value, list):
        return []
    return [x for x in value if isinstance(x, Mapping)]


def _lower(value: JSON) -> str:
    return value.strip().lower() if isinstance(value, str) else ""
