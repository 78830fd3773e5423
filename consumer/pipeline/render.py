"""Render an Event x Mapping into the exact Twilio request, or a typed reason not to send.

Pure: `now` and the default phone region are passed in. Consent policy is applied here (it depends
only on the event); quiet hours, de-duplication and frequency caps are resolved into the
`OutboundMessage` and applied later by the gate, which owns the clock and the state.

Scheduling (`options.send_at`): Twilio accepts SendAt from 15 minutes to 35 days ahead. A minute of
margin is kept on both ends for the time the request spends reaching Twilio. Beyond 35 days the
message is skipped (`send_at_too_far`); under 15 minutes `too_soon` decides: skip
(`send_at_too_soon`), `send_now` (sent without SendAt) or `error` (RenderError, dead-lettered).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import re
from collections.abc import Callable, Iterator
from collections.abc import Mapping as JSONObject
from typing import Any

import phonenumbers

from consumer.errors import RenderError
from consumer.events.model import Event
from consumer.events.recipients import (
    PHONE_CHANNELS,
    Channel,
    Consent,
    Recipient,
    address_candidates,
    consent_of,
    find_recipient,
    normalize_phone,
)
from consumer.logs import mask_phone
from consumer.mappings.fields import MAX_BODY, TAG_TEXT, is_http_url
from consumer.mappings.model import InlineContent, Mapping, QuietHours, TemplateContent
from consumer.mappings.templating import LiquidError, Template, parse_time
from consumer.zones import find_zone

MIN_SEND_AT = dt.timedelta(minutes=15, seconds=60)
MAX_SEND_AT = dt.timedelta(days=35, seconds=-60)
_TAG = re.compile(TAG_TEXT)
_ADDRESS_PREFIX = {Channel.SMS: "", Channel.MMS: "", Channel.WHATSAPP: "whatsapp:", Channel.RCS: "rcs:",
                   Channel.MESSENGER: "messenger:"}  # fmt: skip

# GSM 03.38: the basic set costs one septet, the extension table two.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclasses.dataclass(frozen=True)
class FrequencyCap:
    """At most `limit` messages per recipient per `window_s`, counted under `scope`."""

    limit: int
    window_s: float
    scope: str


@dataclasses.dataclass(frozen=True)
class OutboundMessage:
    """A message ready for the gate and the sender."""

    mapping_id: str
    channel: Channel
    to: str  # exactly as sent in To
    recipient: str  # normalised address: key for ordering, dedup, caps
    sender: str  # From or MessagingServiceSid value
    sender_kind: str
    params: tuple[tuple[str, str], ...]  # the exact Twilio form parameters, MediaUrl repeated
    segments: int
    dedup_key: str  # "" when de-duplication is off
    dedup_window_s: float
    timezone: str | None
    quiet_hours: QuietHours | None
    frequency_cap: FrequencyCap | None


@dataclasses.dataclass(frozen=True)
class Skip:
    """A deliberate decision not to send, with a bounded `reason` label."""

    mapping_id: str
    reason: str
    detail: str  # human text; never a raw phone number


def count_segments(body: str) -> int:
    """SMS segments for `body`: GSM-7 160 (153 per part), else UCS-2 70 (67 per part) code units."""
    if not body:
        return 1
    septets = 0
    gsm = True
    for char in body:
        if char in _GSM_BASIC:
            septets += 1
        elif char in _GSM_EXTENDED:
            septets += 2
        else:
            gsm = False
            break
    if gsm:
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


class _Lazy(JSONObject[str, Any]):
    """A mapping computed on first use, so unused derived views cost nothing per render."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], JSONObject[str, Any] | None]) -> None:
        self._make = make
        self._value: JSONObject[str, Any] | None = None

    def _get(self) -> JSONObject[str, Any]:
        if self._value is None:
            self._value = self._make() or {}
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _view(make: Callable[[], Any]) -> _Lazy:
    # Not `asdict`: its deep copy recurses through the event's own nesting (journey_context).
    return _Lazy(
        lambda: {f.name: getattr(v, f.name) for f in dataclasses.fields(v)} if (v := make()) else None
    )


def _scope(
    event: Event, mapping: Mapping, now: dt.datetime, recipient: Recipient | None
) -> dict[str, object]:
    return {
        "properties": event.properties, "traits": event.traits, "context": event.context,
        "audience": _view(lambda: event.audience), "journey": _view(lambda: event.journey),
        "computed_trait": _view(lambda: event.computed_trait), "event": _Lazy(event.to_segment),
        "recipient": {} if recipient is None else {
            "address": recipient.address, "channel": str(recipient.channel),
            "consent": str(recipient.consent), "source": recipient.source,
        },
        "mapping": {"id": mapping.id, "channel": str(mapping.channel)},
        "now": now, "messageId": event.message_id, "userId": event.user_id, "anonymousId": event.anonymous_id,
        "type": event.type, "timestamp": event.timestamp,
    }  # fmt: skip


def _render(template: Template, scope: dict[str, object], mapping: Mapping, field: str) -> str:
    try:
        return template.render(scope, strict=mapping.strict)
    except LiquidError as exc:
        first = str(exc).splitlines()[0]
        raise RenderError(
            f"mapping {mapping.id!r}: {field}: template failed: {first}. Fix the template, add a "
            "`default` filter, or set missing_variables: empty",
            reason="template_error", mapping_id=mapping.id, field=field,
        ) from None  # fmt: skip


def _invalid(mapping: Mapping, field: str, reason: str, message: str) -> RenderError:
    return RenderError(
        f"mapping {mapping.id!r}: {field}: {message}", reason=reason, mapping_id=mapping.id, field=field
    )


def _find(event: Event, mapping: Mapping, region: str, now: dt.datetime) -> Recipient | Skip:
    spec, channel = mapping.recipient, mapping.channel
    if spec.template is not None:
        raw = _render(spec.template, _scope(event, mapping, now, None), mapping, "recipient.template").strip()
        if not raw:
            return Skip(mapping.id, "no_recipient", "the recipient template rendered empty")
        if channel in PHONE_CHANNELS:
            address = normalize_phone(raw, region)
            if address is None:
                return Skip(
                    mapping.id,
                    "invalid_number",
                    f"recipient.template gave an invalid number {mask_phone(raw)}",
                )
        else:
            address = raw.removeprefix("messenger:")
        consent = consent_of(event, channel, address, default_region=region)
        return Recipient(address=address, channel=channel, consent=consent, source="template")
    sources = (spec.path,) if spec.path is not None else spec.sources
    found = find_recipient(event, channel, default_region=region, sources=sources)
    if found is not None:
        return found
    for source, raw in address_candidates(event, channel, sources=sources):
        return Skip(mapping.id, "invalid_number", f"{source} holds no valid number ({mask_phone(raw)})")
    return Skip(mapping.id, "no_recipient", f"no {channel} address found")


_CONSENT_SKIPS = {
    "require_subscribed": {Consent.UNSUBSCRIBED, Consent.UNKNOWN, Consent.OTHER},
    "allow_unknown": {Consent.UNSUBSCRIBED, Consent.OTHER},
    "ignore": set(),
}
_CONSENT_REASONS = {Consent.UNSUBSCRIBED: "unsubscribed", Consent.UNKNOWN: "consent_unknown",
                    Consent.OTHER: "not_subscribed"}  # fmt: skip


@functools.lru_cache(maxsize=65536)
def _in_us_or_ca(address: str) -> bool:
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(address, None))
    except phonenumbers.NumberParseException:
        return False
    return region in ("US", "CA")


def _sender(mapping: Mapping) -> tuple[str, str, tuple[str, str]]:
    """(sender value, sender kind, the form parameter naming it)."""
    sender, channel = mapping.sender, mapping.channel
    if sender.field == "messaging_service":
        return sender.value, "messaging_service", ("MessagingServiceSid", sender.value)
    if sender.field == "facebook_page_id":
        return sender.value, "messenger", ("From", f"messenger:{sender.value}")
    if channel is Channel.WHATSAPP:
        return sender.value, "whatsapp", ("From", f"whatsapp:{sender.value}")
    return sender.value, sender.kind, ("From", sender.value)


def _content(mapping: Mapping, scope: dict[str, object]) -> tuple[list[tuple[str, str]], int]:
    content = mapping.content
    if isinstance(content, TemplateContent):
        params = [("ContentSid", content.content_sid)]
        if content.variables:
            values = {
                k: _render(t, scope, mapping, f"content.variables.{k}") for k, t in content.variables.items()
            }
            params.append(("ContentVariables", json.dumps(values, ensure_ascii=False, separators=(",", ":"))))
        return params, 1
    assert isinstance(content, InlineContent)
    body = _render(content.body, scope, mapping, "content.body") if content.body is not None else ""
    media: list[str] = []
    for i, template in enumerate(content.media):
        url = _render(template, scope, mapping, f"content.media.{i}").strip()
        if not url:
            continue  # an optional image that this event does not have
        if not is_http_url(url):
            raise _invalid(
                mapping,
                f"content.media.{i}",
                "invalid_media_url",
                "rendered to a value that is not an http(s) URL",
            )
        media.append(url)
    if len(body) > MAX_BODY:
        raise _invalid(
            mapping,
            "content.body",
            "body_too_long",
            f"rendered to {len(body)} characters; Twilio takes {MAX_BODY}",
        )
    if not body.strip() and not media:
        raise _invalid(
            mapping, "content.body", "empty_body", "rendered empty and there is no media; nothing to send"
        )
    if mapping.channel is Channel.MMS and not media:
        raise _invalid(
            mapping, "content.media", "no_media", "every media URL rendered empty; an MMS needs one"
        )
    params = [("Body", body)] if body.strip() else []
    params += [("MediaUrl", url) for url in media]
    segments = count_segments(body) if mapping.channel is Channel.SMS else 1
    return params, segments


def _send_at(mapping: Mapping, scope: dict[str, object], now: dt.datetime) -> list[tuple[str, str]] | Skip:
    spec = mapping.options.send_at
    if spec is None:
        return []
    raw = _render(spec.at, scope, mapping, "options.send_at.at").strip()
    when = parse_time(raw, now)
    if when is None:
        raise _invalid(
            mapping, "options.send_at.at", "invalid_send_at", f"{raw[:40]!r} is not an ISO-8601 time"
        )
    try:
        when += dt.timedelta(seconds=spec.offset)
        ahead = when - now
    except OverflowError:
        raise _invalid(
            mapping, "options.send_at.at", "invalid_send_at", f"{raw[:40]!r} plus the offset is out of range"
        ) from None
    if ahead > MAX_SEND_AT:
        return Skip(
            mapping.id, "send_at_too_far", f"send_at is {ahead.days} days ahead; Twilio schedules up to 35"
        )
    if ahead < MIN_SEND_AT:
        if spec.too_soon == "send_now":
            return []
        detail = f"send_at is {int(ahead.total_seconds() // 60)} minutes ahead; Twilio needs at least 15"
        if spec.too_soon == "error":
            raise _invalid(mapping, "options.send_at", "send_at_too_soon", detail)
        return Skip(mapping.id, "send_at_too_soon", detail)
    stamp = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [("SendAt", stamp), ("ScheduleType", "fixed")]


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a mapping contributes to every request, worked out once per mapping, not per event."""

    sender: str
    sender_kind: str
    sender_param: tuple[str, str]
    to_prefix: str
    options: tuple[tuple[str, str], ...]  # StatusCallback, ValidityPeriod, ShortenUrls, SmartEncoded
    tags: tuple[tuple[str, Template], ...]  # templated tags, rendered per event
    static_tags: str | None  # the Tags JSON when no tag is templated


_PLANS: dict[int, tuple[Mapping, _Plan]] = {}


def _plan(mapping: Mapping) -> _Plan:
    hit = _PLANS.get(id(mapping))
    if hit is not None and hit[0] is mapping:
        return hit[1]
    if len(_PLANS) > 100_000:  # mappings reloaded over and over (tests): start again
        _PLANS.clear()
    opts = mapping.options
    options: list[tuple[str, str]] = []
    if opts.status_callback is not None:
        options.append(("StatusCallback", opts.status_callback))
    if opts.validity_period is not None:
        options.append(("ValidityPeriod", str(opts.validity_period)))
    if opts.shorten_urls is not None:
        options.append(("ShortenUrls", "true" if opts.shorten_urls else "false"))
    if opts.smart_encoded is not None:
        options.append(("SmartEncoded", "true" if opts.smart_encoded else "false"))
    tags = tuple((opts.tags or {}).items())
    static = None
    if tags and all(t.literal is not None for _, t in tags):
        static = json.dumps({k: t.literal for k, t in tags}, separators=(",", ":"))
    sender, sender_kind, sender_param = _sender(mapping)
    plan = _Plan(sender, sender_kind, sender_param, _ADDRESS_PREFIX[mapping.channel], tuple(options),
                 () if static is not None else tags, static)  # fmt: skip
    _PLANS[id(mapping)] = (mapping, plan)
    return plan


def _tags(plan: _Plan, mapping: Mapping, scope: dict[str, object]) -> list[tuple[str, str]]:
    if plan.static_tags is not None:
        return [("Tags", plan.static_tags)]
    tags: dict[str, str] = {}
    for key, template in plan.tags:
        value = _render(template, scope, mapping, f"options.tags.{key}")
        if not 0 < len(value) <= 128 or not _TAG.fullmatch(value):  # fullmatch: `$` admits a final \n
            raise _invalid(
                mapping, f"options.tags.{key}", "invalid_tag", f"rendered to a value not matching {TAG_TEXT}"
            )
        tags[key] = value
    return [("Tags", json.dumps(tags, separators=(",", ":")))] if tags else []


def render(
    event: Event, mapping: Mapping, *, default_region: str, now: dt.datetime
) -> OutboundMessage | Skip:
    """The Twilio request `mapping` makes of `event`, a Skip, or RenderError for a broken result."""
    if not mapping.enabled:
        return Skip(mapping.id, "disabled", "the mapping is disabled")
    region = mapping.recipient.default_region or default_region
    found = _find(event, mapping, region, now)
    if isinstance(found, Skip):
        return found
    recipient = found
    if recipient.consent in _CONSENT_SKIPS[mapping.policies.consent]:
        reason = _CONSENT_REASONS[recipient.consent]
        return Skip(
            mapping.id, reason, f"consent is {recipient.consent} and the policy is {mapping.policies.consent}"
        )
    if mapping.sender.field == "alphanumeric_id" and _in_us_or_ca(recipient.address):
        return Skip(
            mapping.id, "sender_not_allowed", "alphanumeric sender IDs cannot send to US/Canadian numbers"
        )
    scope = _scope(event, mapping, now, recipient)
    scheduled = _send_at(mapping, scope, now)
    if isinstance(scheduled, Skip):
        return scheduled
    plan = _plan(mapping)
    to = plan.to_prefix + recipient.address
    content, segments = _content(mapping, scope)
    params = (
        ("To", to),
        plan.sender_param,
        *content,
        *plan.options,
        *_tags(plan, mapping, scope),
        *scheduled,
    )
    dedup = mapping.policies.dedup
    dedup_key = _render(dedup.key, scope, mapping, "policies.dedup.key") if dedup.enabled else ""
    qh = mapping.policies.quiet_hours
    zone = event.timezone
    valid = find_zone(zone) is not None
    timezone = zone if valid else (qh.default_timezone if qh else None)
    cap = mapping.policies.frequency_cap
    return OutboundMessage(
        mapping_id=mapping.id, channel=mapping.channel, to=to, recipient=recipient.address,
        sender=plan.sender, sender_kind=plan.sender_kind, params=params, segments=segments,
        dedup_key=dedup_key,
        dedup_window_s=dedup.window if dedup.enabled else 0.0, timezone=timezone, quiet_hours=qh,
        frequency_cap=FrequencyCap(cap.max, cap.per, cap.key or mapping.id) if cap else None,
    )  # fmt: skip


__all__ = ["FrequencyCap", "OutboundMessage", "QuietHours", "Skip", "count_segments", "render"]
