"""Message mappings: which events send which message to whom, as frozen pydantic models.

Each field validates on its own (`consumer.mappings.fields`); rules that span fields live in
`consumer.mappings.rules`, and loading a file with its error report in `consumer.mappings.load`.
Templates are compiled while the file is validated.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from consumer.events.recipients import Channel
from consumer.events.sources import Source
from consumer.mappings.fields import (
    ALPHANUMERIC_ID,
    CONTENT_SID,
    E164,
    FACEBOOK_PAGE_ID,
    MAPPING_ID,
    MAX_MEDIA,
    MESSAGING_SERVICE_SID,
    NANP_TOLL_FREE,
    SHORT_CODE,
    TAG,
    TAG_TEXT,
    DottedPath,
    Duration,
    Model,
    RecipientPath,
    TimeZone,
    check_url,
    rule,
    scalar_text,
)
from consumer.mappings.templating import Template
from consumer.mappings.triggers import Trigger

_FRIENDLY_MG = re.compile(r"\[(MG[0-9a-fA-F]{32})\]\s*$")
_FRIENDLY_HX = re.compile(r"\[(HX[0-9a-fA-F]{32})\]\s*$")
#: The keys that name the sender itself; the others in `Sender` are options of it.
SENDER_KINDS = ("phone_number", "short_code", "alphanumeric_id", "messaging_service", "facebook_page_id")
_FALLBACK_SENDER = re.compile(f"{E164}|{SHORT_CODE}|{ALPHANUMERIC_ID}")


# ---- recipient, sender, content -----------------------------------------------------------------


class RecipientSpec(Model):
    """Where the address comes from; by default the channel's search order (consumer.events.recipients)."""

    path: RecipientPath | None = None
    sources: tuple[RecipientPath, ...] | None = Field(default=None, min_length=1)
    template: Template | None = None
    default_region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> RecipientSpec:
        if sum(x is not None for x in (self.path, self.sources, self.template)) > 1:
            raise rule("recipient takes one of path, sources, template", "keep only one of them")
        return self


def _messaging_service(value: str) -> str:
    found = _FRIENDLY_MG.search(value)
    return found.group(1) if found else value


def _content_sid(value: object) -> object:
    # Segment's picker writes "Template Name [HX…]"; the SID is what Twilio takes.
    found = _FRIENDLY_HX.search(value) if isinstance(value, str) else None
    return found.group(1) if found else value


def _fallback_from(value: str) -> str:
    if not _FALLBACK_SENDER.fullmatch(value):  # fullmatch: `$` admits a final \n
        raise rule(
            f"fallback_from {value[:40]!r} is not an SMS sender",
            "give an E.164 number, a short code or an alphanumeric sender ID of this account",
        )
    return value


class Sender(Model):
    """Exactly one sender, plus the RCS options that go with a Messaging Service."""

    phone_number: Annotated[str, StringConstraints(pattern=E164)] | None = None
    short_code: Annotated[str, StringConstraints(pattern=SHORT_CODE)] | None = None
    alphanumeric_id: Annotated[str, StringConstraints(pattern=ALPHANUMERIC_ID)] | None = None
    messaging_service: (
        Annotated[str, BeforeValidator(_messaging_service), StringConstraints(pattern=MESSAGING_SERVICE_SID)]
        | None
    ) = None
    facebook_page_id: Annotated[str, StringConstraints(pattern=FACEBOOK_PAGE_ID)] | None = None
    # RCS through a Messaging Service: a plain E.164 `To` lets Twilio fall back to SMS/MMS; the `rcs:`
    # address (rcs_fallback: false) asks for RCS only. FallbackFrom picks the fallback SMS sender.
    rcs_fallback: bool = True
    fallback_from: Annotated[str, AfterValidator(_fallback_from)] | None = None

    @field_validator(*SENDER_KINDS, mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise rule("the sender is null", "give the sender's value, or use another sender key")
        return value

    @field_validator("short_code", "facebook_page_id", mode="before")
    @classmethod
    def _digits(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _exactly_one(self) -> Sender:
        if len(self.model_fields_set.intersection(SENDER_KINDS)) != 1:
            raise rule(
                "a sender needs exactly one of phone_number, short_code, alphanumeric_id, messaging_service, "
                "facebook_page_id",
                "keep exactly one sender key",
            )
        return self

    @property
    def field(self) -> str:
        return next(k for k in SENDER_KINDS if k in self.model_fields_set)

    @property
    def value(self) -> str:
        value: str = getattr(self, self.field)
        return value

    @property
    def kind(self) -> str:
        """The sender kind for rate limiting: long_code, toll_free, short_code, alphanumeric, ..."""
        field = self.field
        if field == "phone_number":
            toll_free = self.value.startswith("+1") and self.value[2:5] in NANP_TOLL_FREE
            return "toll_free" if toll_free else "long_code"
        return {"alphanumeric_id": "alphanumeric", "facebook_page_id": "messenger"}.get(field, field)


#: The Content Template types (the keys of `consumer.twilio.content.TYPE_CHANNELS`; a test keeps them equal).
ContentType = Literal[
    "twilio/text", "twilio/media", "twilio/quick-reply", "twilio/call-to-action", "twilio/list-picker",
    "twilio/card", "whatsapp/card", "whatsapp/authentication", "twilio/catalog", "twilio/carousel",
    "twilio/location",
]  # fmt: skip


class TemplateContent(Model):
    """A Twilio Content Template; every variable is rendered to a string."""

    content_sid: Annotated[str, BeforeValidator(_content_sid), StringConstraints(pattern=CONTENT_SID)]
    content_type: ContentType | None = Field(default=None, description="declare it to check the channel")
    variables: dict[Annotated[str, StringConstraints(min_length=1)], Template] = Field(default_factory=dict)

    @field_validator("variables", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        # YAML turns `1: x` into an int key and `x: 5` into an int value; Twilio wants strings throughout.
        if isinstance(value, dict):
            return {str(k): v if isinstance(v, str) else scalar_text(v) for k, v in value.items()}
        return value


class InlineContent(Model):
    """A body template and up to 10 media URLs: templates, and/or the items of a list field."""

    body: Template | None = None
    media: tuple[Template, ...] = Field(default=(), max_length=MAX_MEDIA)
    media_from: DottedPath | None = Field(
        default=None, description="a list of URLs in the event (Segment's inlineMediaUrls), after `media`"
    )

    @field_validator("media")
    @classmethod
    def _literal_urls(cls, value: tuple[Template, ...]) -> tuple[Template, ...]:
        for template in value:
            if template.literal is not None:
                check_url(template.literal)
        return value


def _content_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "=template" if "content_sid" in value else "=inline"
    return "=template" if isinstance(value, TemplateContent) else "=inline"


Content = Annotated[
    Annotated[TemplateContent, Tag("=template")] | Annotated[InlineContent, Tag("=inline")],
    Discriminator(_content_tag),
]


# ---- options and policies -----------------------------------------------------------------------


class SendAt(Model):
    """Schedule through a Messaging Service: `at` (a template giving an ISO-8601 time) plus `offset`."""

    at: Template
    offset: Duration = 0.0
    too_soon: Literal["skip", "send_now", "error"] = Field(
        default="skip", description="when the time is under 15 minutes ahead (past: skip or send now)"
    )
    too_far: Literal["skip", "error"] = Field(default="skip", description="when it is beyond 35 days")
    if_missing: Literal["send_now", "error"] = Field(
        default="send_now", description="when `at` renders empty or its field is absent (Segment: send now)"
    )
    margin: Duration = Field(
        default=5.0, ge=0, le=600, description="kept inside Twilio's window for the request's way there"
    )


def _tags(value: object) -> object:
    if not isinstance(value, dict):
        return value
    if len(value) > 10:
        raise rule(f"{len(value)} tags given, Twilio takes at most 10", "remove tags until 10 remain")
    out: dict[str, object] = {}
    for key, raw in value.items():
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue  # Segment drops null and blank tags; so do we (templated ones: at render)
        if isinstance(raw, dict | list):
            raise rule(f"tag {key!r} must be a text, number or boolean", "use a scalar value, not an object")
        raw = raw.strip() if isinstance(raw, str) else raw  # noqa: PLW2901 - Segment trims values
        for what, text in (("key", str(key)), ("value", str(scalar_text(raw)))):
            # Keys are sent as written (only values are templates); fullmatch: `$` admits a final \n.
            literal = what == "key" or ("{{" not in text and "{%" not in text)
            if len(text) > 128 or (literal and not TAG.fullmatch(text)):
                raise rule(
                    f"tag {what} {text[:40]!r} must be 1-128 characters matching {TAG_TEXT}",
                    "use letters, digits, spaces, '_' and '-' only",
                )
        out[str(key)] = scalar_text(raw)
    return out


def _callback(value: str) -> str:
    check_url(value)
    if "_" in (urlsplit(value).hostname or ""):
        raise rule(
            "Twilio rejects status callback hosts containing '_'", "use a host name without underscores"
        )
    return value


class Options(Model):
    validity_period: int | None = Field(default=None, ge=1, le=36000, description="seconds in Twilio's queue")
    send_at: SendAt | None = None
    shorten_urls: bool | None = None
    status_callback: Annotated[str, AfterValidator(_callback)] | None = None
    tags: Annotated[dict[str, Template], BeforeValidator(_tags)] | None = None
    smart_encoded: bool | None = None


DEFAULT_DEDUP_KEY = "{{ mapping.id }}:{{ messageId }}:{{ recipient.address }}"


class Dedup(Model):
    enabled: bool = True
    key: Template = Field(default_factory=lambda: Template(DEFAULT_DEDUP_KEY))
    window: Duration = Field(default=4 * 3600.0, gt=0)


class QuietHours(Model):
    """Local times in the recipient's zone between which nothing is sent (may span midnight)."""

    start: dt.time
    end: dt.time
    action: Literal["hold", "drop"] = "hold"
    default_timezone: TimeZone = Field(description="used when the event carries no valid time zone")


class FrequencyCapPolicy(Model):
    """At most `max` messages per recipient per `per`, counted per `key` (default: the mapping id)."""

    max: int = Field(ge=1)
    per: Duration = Field(gt=0)
    key: str = Field(default="", description="mappings sharing a key share one cap; default: the mapping id")


class Policies(Model):
    consent: Literal["require_subscribed", "allow_unknown", "ignore"] = "require_subscribed"
    dedup: Dedup = Field(default_factory=Dedup)
    quiet_hours: QuietHours | None = None
    frequency_cap: FrequencyCapPolicy | None = None


class Mapping(Model):
    """One mapping: trigger -> recipient, channel, sender, content, options, policies."""

    id: Annotated[str, StringConstraints(pattern=MAPPING_ID)]
    enabled: bool = True
    description: str = ""
    trigger: Trigger
    channel: Channel
    recipient: RecipientSpec = Field(default_factory=RecipientSpec)
    sender: Sender
    content: Content
    options: Options = Field(default_factory=Options)
    policies: Policies = Field(default_factory=Policies)
    missing_variables: Literal["error", "empty"] = Field(
        default="error", description="error: a missing template variable fails the render; empty: renders ''"
    )

    @property
    def strict(self) -> bool:
        return self.missing_variables == "error"


class MappingFile(Model):
    """A mapping file: `mappings: [...]`, and `sources: [...]` for topics of records not Segment-shaped."""

    version: Literal[1] = 1
    mappings: list[Mapping] = Field(default_factory=list)
    sources: list[Source] = Field(
        default_factory=list,
        description="how records that are not Segment-shaped become events, per topic (and record name)",
    )
