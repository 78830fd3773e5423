"""Render an Event x Mapping into the exact Twilio request, or a typed reason not to send.

Pure: `now` and the default phone region are passed in. The consent gate is applied here (it depends
only on the event); quiet hours, de-duplication and frequency caps are resolved into the
`OutboundMessage` and applied on the send path, which owns the clock and the state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import re

import phonenumbers

from consumer.events.model import Event
from consumer.events.recipients import (
    PHONE_CHANNELS,
    Channel,
    Recipient,
    address_candidates,
    consent_of,
    find_recipient,
    normalize_address,
)
from consumer.logs import mask_phone
from consumer.mappings.fields import TAG_TEXT
from consumer.mappings.model import Mapping
from consumer.mappings.templating import Template
from consumer.pipeline.body import content_params
from consumer.pipeline.correlation import callback_url
from consumer.pipeline.gates import consent_skip
from consumer.pipeline.message import FrequencyCap, OutboundMessage, Skip
from consumer.pipeline.schedule import send_at_params
from consumer.pipeline.scope import invalid, render_field, scope_of
from consumer.zones import find_zone

_TAG = re.compile(TAG_TEXT)
# RCS goes through a Messaging Service as a plain E.164 number, which gets RCS first and Twilio's
# SMS/MMS fallback; `rcs:` (RCS only, no fallback) is chosen by the sender option rcs_fallback: false.
_ADDRESS_PREFIX = {Channel.SMS: "", Channel.MMS: "", Channel.WHATSAPP: "whatsapp:", Channel.RCS: "",
                   Channel.MESSENGER: "messenger:"}  # fmt: skip


def _to_prefix(mapping: Mapping) -> str:
    if mapping.channel is Channel.RCS and not mapping.sender.rcs_fallback:
        return "rcs:"
    return _ADDRESS_PREFIX[mapping.channel]


def _find(event: Event, mapping: Mapping, region: str, now: dt.datetime, strict: bool) -> Recipient | Skip:
    spec, channel = mapping.recipient, mapping.channel
    if spec.template is not None:
        raw = render_field(
            spec.template, scope_of(event, mapping, now, None), mapping, "recipient.template"
        ).strip()
        if not raw:
            return Skip(mapping.id, "no_recipient", "the recipient template rendered empty")
        if channel in PHONE_CHANNELS:
            address = normalize_address(raw, channel, region, strict=strict)
            if address is None:
                detail = f"recipient.template gave an invalid number {mask_phone(raw)}"
                return Skip(mapping.id, "invalid_number", detail)
        else:
            address = raw.removeprefix("messenger:")
        consent = consent_of(event, channel, address, default_region=region, strict=strict)
        return Recipient(address=address, channel=channel, consent=consent, source="template")
    sources = (spec.path,) if spec.path is not None else spec.sources
    found = find_recipient(event, channel, default_region=region, sources=sources, strict=strict)
    if found is not None:
        return found
    for source, raw in address_candidates(event, channel, sources=sources):
        return Skip(mapping.id, "invalid_number", f"{source} holds no valid number ({mask_phone(raw)})")
    return Skip(mapping.id, "no_recipient", f"no {channel} address found")


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


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a mapping contributes to every request, worked out once per mapping, not per event."""

    sender: str
    sender_kind: str
    sender_param: tuple[str, str]
    to_prefix: str
    callback: str | None  # the StatusCallback base; each event's correlation is appended to it
    options: tuple[tuple[str, str], ...]  # ValidityPeriod, ShortenUrls, SmartEncoded
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
    if mapping.sender.fallback_from is not None:
        options.append(("FallbackFrom", mapping.sender.fallback_from))
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
    plan = _Plan(sender, sender_kind, sender_param, _to_prefix(mapping), opts.status_callback, tuple(options),
                 () if static is not None else tags, static)  # fmt: skip
    _PLANS[id(mapping)] = (mapping, plan)
    return plan


def _tags(plan: _Plan, mapping: Mapping, scope: dict[str, object]) -> list[tuple[str, str]]:
    if plan.static_tags is not None:
        return [("Tags", plan.static_tags)]
    tags: dict[str, str] = {}
    for key, template in plan.tags:
        value = render_field(template, scope, mapping, f"options.tags.{key}").strip()
        if not value:
            continue  # Segment drops a tag whose value is empty; so do we
        if len(value) > 128 or not _TAG.fullmatch(value):  # fullmatch: `$` admits a final \n
            raise invalid(
                mapping, f"options.tags.{key}", "invalid_tag", f"rendered to a value not matching {TAG_TEXT}"
            )
        tags[key] = value
    return [("Tags", json.dumps(tags, separators=(",", ":")))] if tags else []


def render(
    event: Event, mapping: Mapping, *, default_region: str, now: dt.datetime, strict_numbers: bool = False
) -> OutboundMessage | Skip:
    """The Twilio request `mapping` makes of `event`, a Skip, or RenderError for a broken result.

    `strict_numbers`: accept only numbers phonenumbers knows as valid, not merely possible ones."""
    if not mapping.enabled:
        return Skip(mapping.id, "disabled", "the mapping is disabled")
    region = mapping.recipient.default_region or default_region
    found = _find(event, mapping, region, now, strict_numbers)
    if isinstance(found, Skip):
        return found
    recipient = found
    refused = consent_skip(mapping.id, recipient.consent, mapping.policies.consent)
    if refused is not None:
        return refused
    if mapping.sender.field == "alphanumeric_id" and _in_us_or_ca(recipient.address):
        return Skip(
            mapping.id, "sender_not_allowed", "alphanumeric sender IDs cannot send to US/Canadian numbers"
        )
    scope = scope_of(event, mapping, now, recipient)
    scheduled = send_at_params(mapping, scope, now)
    if isinstance(scheduled, Skip):
        return scheduled
    plan = _plan(mapping)
    to = plan.to_prefix + recipient.address
    content, segments = content_params(mapping, scope)
    params = (
        ("To", to),
        plan.sender_param,
        *content,
        *(
            ()
            if plan.callback is None
            else (("StatusCallback", callback_url(plan.callback, mapping.id, str(mapping.channel), event)),)
        ),
        *plan.options,
        *_tags(plan, mapping, scope),
        *scheduled,
    )
    dedup = mapping.policies.dedup
    dedup_key = render_field(dedup.key, scope, mapping, "policies.dedup.key") if dedup.enabled else ""
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
