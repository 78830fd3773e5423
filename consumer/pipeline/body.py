"""Message content: a Content Template's variables or an inline body and media, and SMS segments."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping as JSONObject

from consumer.events.recipients import Channel
from consumer.mappings.fields import MAX_BODY, MAX_MEDIA, is_http_url
from consumer.mappings.model import InlineContent, Mapping, TemplateContent
from consumer.pipeline.scope import invalid, render_field

# GSM 03.38: the basic set costs one septet, the extension table two.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


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


def _at_path(scope: dict[str, object], path: str) -> object:
    """The value at a dotted path of the render scope (list items by index), or None."""
    value: object = scope
    for part in path.split("."):
        if isinstance(value, JSONObject):
            value = value.get(part)
        elif isinstance(value, list | tuple) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else None
        else:
            return None
    return value


def _listed_media(mapping: Mapping, content: InlineContent, scope: dict[str, object]) -> list[str]:
    """The URLs of `content.media_from`: a list (or one URL), blanks skipped, as Segment's inlineMediaUrls."""
    if content.media_from is None:
        return []
    value = _at_path(scope, content.media_from)
    items = [value] if isinstance(value, str) else value if isinstance(value, list | tuple) else []
    urls: list[str] = []
    for item in items:
        if item is None:
            continue  # a missing image of this event, as a blank one
        url = item.strip() if isinstance(item, str) else None
        if url == "":
            continue
        if url is None or not is_http_url(url):
            raise invalid(
                mapping, "content.media_from", "invalid_media_url", "holds an item that is not an http(s) URL"
            )
        urls.append(url)
    return urls


def content_params(mapping: Mapping, scope: dict[str, object]) -> tuple[list[tuple[str, str]], int]:
    content = mapping.content
    if isinstance(content, TemplateContent):
        params = [("ContentSid", content.content_sid)]
        if content.variables:
            values = {
                k: render_field(t, scope, mapping, f"content.variables.{k}")
                for k, t in content.variables.items()
            }
            params.append(("ContentVariables", json.dumps(values, ensure_ascii=False, separators=(",", ":"))))
        return params, 1
    assert isinstance(content, InlineContent)
    body = render_field(content.body, scope, mapping, "content.body") if content.body is not None else ""
    media: list[str] = []
    for i, template in enumerate(content.media):
        url = render_field(template, scope, mapping, f"content.media.{i}").strip()
        if not url:
            continue  # an optional image that this event does not have
        if not is_http_url(url):
            raise invalid(
                mapping,
                f"content.media.{i}",
                "invalid_media_url",
                "rendered to a value that is not an http(s) URL",
            )
        media.append(url)
    media += _listed_media(mapping, content, scope)
    limit = 1 if mapping.channel is Channel.WHATSAPP else MAX_MEDIA
    if len(media) > limit:
        field = "content.media_from" if content.media_from is not None else "content.media"
        raise invalid(mapping, field, "too_many_media", f"gave {len(media)} media URLs; Twilio takes {limit}")
    if len(body) > MAX_BODY:
        raise invalid(
            mapping,
            "content.body",
            "body_too_long",
            f"rendered to {len(body)} characters; Twilio takes {MAX_BODY}",
        )
    if not body.strip() and not media:
        raise invalid(
            mapping, "content.body", "empty_body", "rendered empty and there is no media; nothing to send"
        )
    if mapping.channel is Channel.MMS and not media:
        raise invalid(
            mapping, "content.media", "no_media", "every media URL rendered empty; an MMS needs one"
        )
    params = [("Body", body)] if body.strip() else []
    params += [("MediaUrl", url) for url in media]
    segments = count_segments(body) if mapping.channel is Channel.SMS else 1
    return params, segments
