"""Content Templates: check at start-up that every mapping's template can be sent as mapped.

`check_templates` is pure: it takes requirement tuples (mapping id, ContentSid, channel, the
variable names the mapping fills) and the templates as the Content API returns them, and lists
every problem. `verify_templates` fetches the templates with a `TwilioClient` and raises a
MappingError naming each mapping, template and fix.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from consumer.errors import MappingError


class ContentLister(Protocol):
    """Lists the account's Content Templates (consumer.twilio.client.TwilioClient does)."""

    async def list_content(self) -> list[dict[str, Any]]: ...


#: Content type -> channels that can deliver it (reference/segment-destination.md, plus twilio/location).
TYPE_CHANNELS: Mapping[str, frozenset[str]] = {
    "twilio/text": frozenset({"sms", "whatsapp", "messenger", "rcs"}),
    "twilio/media": frozenset({"mms", "whatsapp", "messenger", "rcs"}),
    "twilio/quick-reply": frozenset({"whatsapp", "messenger"}),
    "twilio/call-to-action": frozenset({"whatsapp", "messenger"}),
    "twilio/list-picker": frozenset({"whatsapp"}),
    "twilio/card": frozenset({"whatsapp", "messenger", "rcs"}),
    "whatsapp/card": frozenset({"whatsapp"}),
    "whatsapp/authentication": frozenset({"whatsapp"}),
    "twilio/catalog": frozenset({"whatsapp"}),
    "twilio/carousel": frozenset({"whatsapp", "messenger", "rcs"}),
    "twilio/location": frozenset({"whatsapp", "messenger"}),
}

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")


class TemplateRequirement(NamedTuple):
    """What one mapping needs from its template. A plain 4-tuple works too."""

    mapping_id: str
    content_sid: str
    channel: str
    variables: Collection[str]


def template_tokens(template: Mapping[str, Any]) -> frozenset[str]:
    """The `{{n}}` variable names used anywhere in the template's types."""
    found: set[str] = set()
    for text in _strings(template.get("types") or {}):
        found.update(_TOKEN.findall(text))
    return frozenset(found)


def template_channels(template: Mapping[str, Any]) -> frozenset[str]:
    """Channels that can deliver at least one of the template's types."""
    channels: frozenset[str] = frozenset()
    for content_type in template.get("types") or {}:
        channels |= TYPE_CHANNELS.get(content_type, frozenset())
    return channels


def check_templates(
    requirements: Iterable[tuple[str, str, str, Collection[str]]],
    templates: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Every problem with the mappings' templates: missing, wrong channel, variables that do not match."""
    problems: list[str] = []
    for mapping_id, sid, raw_channel, variables in requirements:
        where = f"mapping {mapping_id!r}: content template {sid}"
        template = templates.get(sid)
        if template is None:
            problems.append(f"{where} does not exist in this Twilio account: fix contentSid or create it")
            continue
        channel = str(raw_channel).lower()
        types = sorted(template.get("types") or {})
        if channel not in template_channels(template):
            problems.append(
                f"{where} has types {', '.join(types) or 'none'}, none of which can be sent over {channel}: "
                f"pick a template with a {channel} type"
            )
        tokens = template_tokens(template)
        mapped = {str(v) for v in variables}
        if extra := sorted(mapped - tokens, key=_natural):
            problems.append(
                f"{where} has no variable {_list(extra)} (it uses {_list(tokens)}): "
                "remove them from contentVariables"
            )
        if missing := sorted(tokens - mapped, key=_natural):
            problems.append(
                f"{where} uses {_list(missing)}, which the mapping does not fill: "
                "add them to contentVariables (Twilio would otherwise send the sample values)"
            )
    return problems


async def verify_templates(
    client: ContentLister, requirements: Sequence[tuple[str, str, str, Collection[str]]]
) -> None:
    """Fetch every template (all pages) and raise MappingError listing each problem."""
    if not requirements:
        return
    templates = {str(t.get("sid")): t for t in await client.list_content()}
    problems = check_templates(requirements, templates)
    if problems:
        raise MappingError(f"{len(problems)} content template problem(s)", problems=tuple(problems))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def _list(tokens: Collection[str]) -> str:
    return ", ".join("{{" + t + "}}" for t in sorted(tokens, key=_natural)) or "no variables"
