"""Rules that span a mapping's sections: which senders and content a channel allows, scheduling
only through a Messaging Service, WhatsApp's one medium, and so on.

`cross_check` takes each section or None (when that section was itself invalid), so a rule is
reported even when an unrelated field of the mapping is broken.
"""

from __future__ import annotations

from consumer.events.recipients import Channel
from consumer.mappings.fields import MAX_BODY
from consumer.mappings.model import InlineContent, Options, RecipientSpec, Sender, TemplateContent
from consumer.twilio.content import TYPE_CHANNELS

SENDER_KINDS: dict[Channel, tuple[str, ...]] = {
    Channel.SMS: ("phone_number", "short_code", "alphanumeric_id", "messaging_service"),
    Channel.MMS: ("phone_number", "short_code", "messaging_service"),
    Channel.WHATSAPP: ("phone_number", "messaging_service"),
    Channel.RCS: ("messaging_service",),
    Channel.MESSENGER: ("facebook_page_id",),
}

Finding = tuple[str, str, str]  # (field, message, fix)


def cross_check(
    channel: Channel | None,
    sender: Sender | None,
    content: TemplateContent | InlineContent | None,
    options: Options | None,
    recipient: RecipientSpec | None,
) -> list[Finding]:
    """Rules spanning sections; each argument is None when that section itself was invalid."""
    found: list[Finding] = []
    if channel is not None and sender is not None and sender.field not in SENDER_KINDS[channel]:
        allowed = SENDER_KINDS[channel]
        found.append((
            f"sender.{sender.field}", f"channel {channel} cannot be sent from a {sender.field}",
            f"use sender {' or '.join(allowed)} for {channel}",
        ))  # fmt: skip
    if sender is not None:
        found += _rcs_rules(channel, sender)
    ms_only = sender is not None and sender.field != "messaging_service"
    if options is not None and ms_only:
        if options.send_at is not None:
            found.append((
                "options.send_at", "send_at needs a Messaging Service sender (only they can schedule)",
                "set sender.messaging_service, or remove options.send_at",
            ))  # fmt: skip
        if options.shorten_urls:
            found.append((
                "options.shorten_urls", "shorten_urls needs a Messaging Service sender",
                "set sender.messaging_service, or remove options.shorten_urls",
            ))  # fmt: skip
    if channel is not None and isinstance(content, TemplateContent) and content.content_type is not None:
        channels = TYPE_CHANNELS[content.content_type]
        if channel not in channels:
            found.append((
                "content.content_type", f"{content.content_type} templates cannot be sent on {channel}",
                f"use channel {' or '.join(sorted(channels))}, or a template type that {channel} supports",
            ))  # fmt: skip
    if channel is not None and isinstance(content, InlineContent):
        found += _inline_rules(channel, content)
    if sender is not None and sender.field == "alphanumeric_id" and recipient is not None:
        literal = recipient.template.literal if recipient.template is not None else None
        if literal is not None and literal.startswith("+1"):
            found.append((
                "sender.alphanumeric_id", "alphanumeric sender IDs cannot send to US/Canadian (+1) numbers",
                "use a phone_number, short_code or messaging_service sender for +1 recipients",
            ))  # fmt: skip
    return found


def _rcs_rules(channel: Channel | None, sender: Sender) -> list[Finding]:
    """FallbackFrom as Twilio's spec allows it: only with a Messaging Service holding an RCS sender,
    and never with the `rcs:` address, which asks for no fallback at all."""
    found: list[Finding] = []
    fallback = sender.fallback_from is not None
    if fallback and (channel is not Channel.RCS or sender.field != "messaging_service"):
        found.append((
            "sender.fallback_from",
            "fallback_from is the SMS fallback of RCS sent through a Messaging Service",
            "set channel: rcs with sender.messaging_service, or remove fallback_from",
        ))  # fmt: skip
    if not sender.rcs_fallback and channel is not None and channel is not Channel.RCS:
        found.append((
            "sender.rcs_fallback", f"rcs_fallback applies to RCS, not {channel}",
            "remove rcs_fallback, or set channel: rcs",
        ))  # fmt: skip
    if fallback and not sender.rcs_fallback:
        found.append((
            "sender.fallback_from", "fallback_from names a fallback, but rcs_fallback: false asks for none",
            "remove fallback_from, or remove rcs_fallback: false",
        ))  # fmt: skip
    return found


def _inline_rules(channel: Channel, content: InlineContent) -> list[Finding]:
    found: list[Finding] = []
    body = content.body.literal if content.body is not None else None
    if body is not None and not body.strip():
        found.append(
            ("content.body", "the body is empty", "write the message text, or remove `body` and send media")
        )
    elif content.body is None and not content.media and content.media_from is None:
        found.append(("content", "an inline message needs a body or media", "add `content.body`"))
    if body is not None and len(body) > MAX_BODY:
        found.append((
            "content.body", f"the body is {len(body)} characters, Twilio takes at most {MAX_BODY}",
            "shorten the text (or send a link)",
        ))  # fmt: skip
    if channel is Channel.SMS and (content.media or content.media_from is not None):
        field = "content.media" if content.media else "content.media_from"
        found.append((field, "SMS carries no media", f"set channel: mms, or remove {field}"))
    if channel is Channel.MMS and not content.media and content.media_from is None:
        found.append(
            ("content.media", "an MMS needs at least one media URL", "add content.media, or use channel: sms")
        )
    if channel is Channel.WHATSAPP and len(content.media) > 1:
        found.append(("content.media", "WhatsApp takes one media file per message", "keep one media URL"))
    return found
