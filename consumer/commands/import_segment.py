"""`kafka-twilio import-segment FILE`: Segment's Twilio Messaging subscriptions as a mapping file.

FILE is what Segment's Public API returns for a destination's action subscriptions
(`{"data": {"subscriptions": [...]}}`, one `{"data": {"subscription": …}}`, or a bare list). Each
`sendMessage` subscription becomes one mapping: its FQL trigger via `segment_fql`, its settings'
directives via `segment_directives`, Segment's behaviour kept where ours differs by default (no
consent check, missing template variables print empty, send times outside Twilio's window are errors).
A subscription with anything that cannot be translated is left out and listed with the field and
why; every mapping written passes `validate`. See docs/migrating-from-segment.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from consumer.commands.segment_directives import path_of, template_of
from consumer.commands.segment_fql import Untranslatable, translate_trigger
from consumer.mappings.fields import RECIPIENT_ROOTS
from consumer.mappings.load import parse_mappings

CHANNELS = {"sms": "sms", "mms": "mms", "whatsapp": "whatsapp", "rcs": "rcs", "messenger": "messenger"}
SENDERS = {"Phone number": ("fromPhoneNumber", "phone_number"),
           "Messaging Service": ("messagingServiceSid", "messaging_service"),
           "Facebook Page ID": ("fromFacebookPageId", "facebook_page_id")}  # fmt: skip
# Segment's template types by their picker names; its Carousel → twilio/catalog is its own mistake.
CONTENT_TYPES = {"Text": "twilio/text", "Media": "twilio/media", "Quick Reply": "twilio/quick-reply",
                 "Call to Action": "twilio/call-to-action", "List Picker": "twilio/list-picker",
                 "Card": "twilio/card", "WhatsApp Card": "whatsapp/card",
                 "WhatsApp Authentication": "whatsapp/authentication", "Catalog": "twilio/catalog",
                 "Carousel": "twilio/carousel"}  # fmt: skip
KNOWN = frozenset({"channel", "senderType", "contentTemplateType", "toPhoneNumber", "toMessengerUserId",
                   "fromPhoneNumber", "fromFacebookPageId", "messagingServiceSid", "contentSid",
                   "contentVariables", "inlineBody", "inlineMediaUrls", "validityPeriod", "sendAt",
                   "tags"})  # fmt: skip


class _Skip(Exception):
    """A subscription left out: `field` and why."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")


def subscriptions_of(data: object) -> list[dict[str, Any]]:
    """The subscriptions in a Public API answer (list, one, or a bare list)."""
    inner = data.get("data", data) if isinstance(data, dict) else data
    if isinstance(inner, dict) and "subscriptions" in inner:
        inner = inner["subscriptions"]
    elif isinstance(inner, dict) and "subscription" in inner:
        inner = [inner["subscription"]]
    if not isinstance(inner, list) or not all(isinstance(s, dict) for s in inner):
        raise ValueError('expected Segment\'s `{"data": {"subscriptions": [...]}}`')
    return inner


def _literal(settings: dict[str, Any], key: str) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Skip(key, "needs a fixed text here (ours is one value per mapping, not per event)")
    return value.strip()


def _template(settings: dict[str, Any], key: str) -> str:
    try:
        return template_of(settings[key])
    except Untranslatable as exc:
        raise _Skip(key, str(exc)) from None


def _recipient(settings: dict[str, Any], channel: str) -> dict[str, Any]:
    key = "toMessengerUserId" if channel == "messenger" else "toPhoneNumber"
    if settings.get(key) in (None, ""):
        raise _Skip(key, "not set; Segment cannot send without it either")
    path = path_of(settings[key])
    if path is not None and path.split(".", 1)[0] in RECIPIENT_ROOTS:
        return {"path": path}
    return {"template": _template(settings, key)}


def _scalars(settings: dict[str, Any], key: str) -> dict[str, Any]:
    """contentVariables / tags: literal scalars as they are (the model prints them), directives as Liquid."""
    value = settings.get(key) or {}
    if not isinstance(value, dict):
        raise _Skip(key, "expected an object of key: value pairs")
    out: dict[str, Any] = {}
    for name, item in value.items():
        if item is None or isinstance(item, bool | int | float):
            out[str(name)] = item
        else:
            try:
                out[str(name)] = template_of(item)
            except Untranslatable as exc:
                raise _Skip(f"{key}.{name}", str(exc)) from None
    return out


def _content(settings: dict[str, Any]) -> dict[str, Any]:
    kind = settings.get("contentTemplateType")
    if kind == "Inline":
        content: dict[str, Any] = {}
        if settings.get("inlineBody") not in (None, ""):
            content["body"] = _template(settings, "inlineBody")
        media = settings.get("inlineMediaUrls")
        if isinstance(media, list):
            content["media"] = [template_of(m) for m in media if m not in (None, "")]
        elif media not in (None, ""):
            listed = path_of(media)
            if listed is None:
                raise _Skip("inlineMediaUrls", "only a list, or an @path to a list, is translated")
            content["media_from"] = listed
        return content
    if kind not in CONTENT_TYPES:
        raise _Skip("contentTemplateType", f"{kind!r} is not one of Inline, {', '.join(CONTENT_TYPES)}")
    content = {"content_sid": _literal(settings, "contentSid"), "content_type": CONTENT_TYPES[str(kind)]}
    variables = _scalars(settings, "contentVariables")
    if variables:
        content["variables"] = variables
    return content


def _options(settings: dict[str, Any], sender_key: str, notes: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    validity = settings.get("validityPeriod")
    if validity not in (None, ""):
        if not isinstance(validity, int | float) or isinstance(validity, bool):
            raise _Skip("validityPeriod", "only a fixed number of seconds is translated")
        options["validity_period"] = int(validity)
    if settings.get("sendAt") not in (None, ""):
        if sender_key != "messaging_service":
            notes.append("sendAt: Segment ignores it without a Messaging Service; not imported")
        else:
            # Segment refuses a time outside Twilio's window; an empty one sends at once (our default).
            options["send_at"] = {
                "at": _template(settings, "sendAt"),
                "too_soon": "error",
                "too_far": "error",
            }
    tags = {k: v for k, v in _scalars(settings, "tags").items() if v is not None}
    if tags:
        options["tags"] = tags
    return options


def _mapping_id(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._")[:56] or "segment"
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}-{n}", n + 1
    used.add(candidate)
    return candidate


def translate(sub: dict[str, Any], used: set[str], notes: list[str]) -> dict[str, Any]:
    """One subscription as a mapping dict; raises _Skip naming the field that stops it."""
    if sub.get("actionSlug") != "sendMessage":
        raise _Skip("actionSlug", f"{sub.get('actionSlug')!r} is not Twilio Messaging's sendMessage")
    settings = sub.get("settings")
    if not isinstance(settings, dict):
        raise _Skip("settings", "missing")
    unknown = sorted(set(settings) - KNOWN)
    if unknown:
        raise _Skip(unknown[0], "not a field of sendMessage")
    try:
        trigger = translate_trigger(str(sub.get("trigger") or ""))
    except Untranslatable as exc:
        raise _Skip("trigger", str(exc)) from None
    channel = CHANNELS.get(str(settings.get("channel", "")).lower())
    if channel is None:
        raise _Skip("channel", f"{settings.get('channel')!r} is not SMS, MMS, WhatsApp, RCS or Messenger")
    sender_type = settings.get("senderType")
    if sender_type not in SENDERS:
        raise _Skip("senderType", f"{sender_type!r} is not one of {', '.join(SENDERS)}")
    source_key, sender_key = SENDERS[str(sender_type)]
    name = str(sub.get("name") or sub.get("id") or "segment")
    mapping: dict[str, Any] = {
        "id": _mapping_id(name, used), "enabled": bool(sub.get("enabled", True)),
        "description": f"imported from Segment subscription {sub.get('id', '?')} ({name})",
        "trigger": trigger, "channel": channel, "recipient": _recipient(settings, channel),
        "sender": {sender_key: _literal(settings, source_key)}, "content": _content(settings),
    }  # fmt: skip
    options = _options(settings, sender_key, notes)
    if options:
        mapping["options"] = options
    # Segment checks no subscription status and prints a missing variable as empty: so do these.
    mapping["policies"] = {"consent": "ignore"}
    mapping["missing_variables"] = "empty"
    return mapping


def import_subscriptions(subs: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(mappings that pass validate, report lines: one per subscription imported or left out)."""
    mappings: list[dict[str, Any]] = []
    report: list[str] = []
    used: set[str] = set()
    for sub in subs:
        label = f"subscription {sub.get('id', '?')} ({sub.get('name', '')!s})"
        notes: list[str] = []
        try:
            mapping = translate(sub, used, notes)
        except _Skip as exc:
            report.append(f"LEFT OUT {label}: {exc}")
            continue
        problems = parse_mappings({"mappings": [mapping]}, "import")[1]
        if problems:
            report.append(f"LEFT OUT {label}: our validation refuses it: " + "; ".join(problems))
            continue
        mappings.append(mapping)
        report.append(f"imported {label} as mapping {mapping['id']!r}")
        report += [f"  note: {note}" for note in notes]
    return mappings, report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kafka-twilio import-segment",
        description="Write a mapping file from a Segment Twilio Messaging destination's subscriptions "
        "(the JSON of Segment's Public API); list what cannot be translated.",
    )
    parser.add_argument("file", type=Path, help="the subscriptions JSON")
    parser.add_argument("-o", "--output", type=Path, help="the mapping file to write (default: stdout)")
    args = parser.parse_args(argv)
    try:
        subs = subscriptions_of(json.loads(args.file.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        print(f"import-segment: {args.file}: {exc}", file=sys.stderr)
        return 2
    mappings, report = import_subscriptions(subs)
    header = (
        f"# Written by `kafka-twilio import-segment {args.file.name}`; check with `kafka-twilio validate`.\n"
    )
    text = header + yaml.safe_dump(
        {"version": 1, "mappings": mappings}, sort_keys=False, allow_unicode=True, width=1_000_000
    )
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    for line in report:
        print(line, file=sys.stderr)
    left_out = sum(line.startswith("LEFT OUT") for line in report)
    print(f"{len(mappings)} imported, {left_out} left out", file=sys.stderr)
    return 1 if left_out else 0
