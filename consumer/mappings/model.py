"""Message mappings: which events send which message to whom, loaded from reviewed YAML files.

The models are frozen pydantic models; templates are compiled while the file is validated. Loading
reports every problem at once, each naming the file, the mapping id, the field and the fix. Rules that
span fields (which senders and content a channel allows, send-at only with a Messaging Service, …)
are plain functions (`cross_check`) run on each section that validated, so they are reported even
when an unrelated field is invalid.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from consumer.errors import MappingError
from consumer.events.model import JSON
from consumer.events.recipients import CONTEXT_EXTERNAL_IDS, EXTERNAL_IDS, Channel
from consumer.mappings.templating import Template, parse_duration

# Segment's exact regexes (reference/segment-destination.md), plus Twilio's sender formats.
E164 = r"^\+[1-9]\d{1,14}$"
SHORT_CODE = r"^[1-9]\d{4,5}$"
ALPHANUMERIC_ID = r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$"
MESSAGING_SERVICE_SID = r"^MG[0-9a-fA-F]{32}$"
CONTENT_SID = r"^HX[0-9a-fA-F]{32}$"
TAG_TEXT = r"^[a-zA-Z0-9 _-]+$"
FACEBOOK_PAGE_ID = r"^[0-9]{1,32}$"
MAPPING_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_FRIENDLY_MG = re.compile(r"\[(MG[0-9a-fA-F]{32})\]\s*$")
_E164 = re.compile(E164)
_TAG = re.compile(TAG_TEXT)
NANP_TOLL_FREE = frozenset({"800", "833", "844", "855", "866", "877", "888"})

#: Where condition and recipient paths may start.
PATH_ROOTS = frozenset(
    {"properties", "traits", "context", "integrations", "audience", "journey", "computed_trait", "event",
     "messageId", "userId", "anonymousId", "type", "timestamp"}
)  # fmt: skip

#: Content Template types and the channels that render them (Segment's table, carousel corrected).
CONTENT_TYPES: dict[str, frozenset[Channel]] = {
    "twilio/text": frozenset({Channel.SMS, Channel.WHATSAPP, Channel.MESSENGER, Channel.RCS}),
    "twilio/media": frozenset({Channel.MMS, Channel.WHATSAPP, Channel.MESSENGER, Channel.RCS}),
    "twilio/quick-reply": frozenset({Channel.WHATSAPP, Channel.MESSENGER}),
    "twilio/call-to-action": frozenset({Channel.WHATSAPP, Channel.MESSENGER}),
    "twilio/list-picker": frozenset({Channel.WHATSAPP}),
    "twilio/card": frozenset({Channel.WHATSAPP, Channel.MESSENGER, Channel.RCS}),
    "whatsapp/card": frozenset({Channel.WHATSAPP}),
    "whatsapp/authentication": frozenset({Channel.WHATSAPP}),
    "twilio/catalog": frozenset({Channel.WHATSAPP}),
    "twilio/carousel": frozenset({Channel.WHATSAPP, Channel.MESSENGER, Channel.RCS}),
}
SENDER_KINDS: dict[Channel, tuple[str, ...]] = {
    Channel.SMS: ("phone_number", "short_code", "alphanumeric_id", "messaging_service"),
    Channel.MMS: ("phone_number", "short_code", "messaging_service"),
    Channel.WHATSAPP: ("phone_number", "messaging_service"),
    Channel.RCS: ("messaging_service",),
    Channel.MESSENGER: ("facebook_page_id",),
}
MAX_BODY = 1600
MAX_MEDIA = 10


def _rule(message: str, fix: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError("mapping_rule", message, {**ctx, "fix": fix})


def _duration(value: object) -> object:
    if isinstance(value, str):
        seconds = parse_duration(value)
        if seconds is None:
            raise _rule(
                f"{value!r} is not a duration", "write seconds (90) or a duration like 15m, 4h, 1d12h"
            )
        return seconds
    return value


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(
        {"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^[+-]?(\d+(\.\d+)?[dhms])+$"}]}
    ),
]


def _path(value: str) -> str:
    root = value.split(".", 1)[0]
    if root not in PATH_ROOTS:
        raise _rule(
            f"path {value!r} starts from unknown root {root!r}",
            f"start the path from one of {', '.join(sorted(PATH_ROOTS))}",
        )
    return value


DottedPath = Annotated[str, StringConstraints(min_length=1), AfterValidator(_path)]
RECIPIENT_ROOTS = ("properties", "traits", "context", "integrations")


def _recipient_path(value: str) -> str:
    if value in (EXTERNAL_IDS, CONTEXT_EXTERNAL_IDS) or value.split(".", 1)[0] in RECIPIENT_ROOTS:
        return value
    raise _rule(
        f"recipient path {value!r} is not searchable",
        f"start it from {', '.join(RECIPIENT_ROOTS)}, or use {EXTERNAL_IDS} / {CONTEXT_EXTERNAL_IDS}",
    )


RecipientPath = Annotated[str, StringConstraints(min_length=1), AfterValidator(_recipient_path)]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tzdata directory ("America")
        raise _rule(f"unknown time zone {value!r}", "use an IANA name such as America/New_York") from None
    return value


TimeZone = Annotated[str, AfterValidator(_zone)]


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _rule(f"{value!r} is not an http(s) URL", "write an absolute URL such as https://example.com/x")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", regex_engine="python-re")


# ---- conditions ---------------------------------------------------------------------------------

_OPERATORS = ("equals", "not_equals", "in", "not_in", "exists", "gt", "gte", "lt", "lte", "contains",
              "matches")  # fmt: skip


class Comparison(_Model):
    """Compare the value at a dotted path; exactly one operator."""

    path: DottedPath
    equals: JSON = None
    not_equals: JSON = None
    in_: list[JSON] | None = Field(default=None, alias="in")
    not_in: list[JSON] | None = None
    exists: bool | None = None
    gt: float | str | None = None
    gte: float | str | None = None
    lt: float | str | None = None
    lte: float | str | None = None
    contains: JSON = None
    matches: re.Pattern[str] | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Comparison:
        given = [f for f in self.operators if f]
        if len(given) != 1:
            raise _rule(
                f"a comparison needs exactly one operator, found {len(given)}",
                f"use one of {', '.join(_OPERATORS)} next to `path`",
            )
        return self

    @property
    def operators(self) -> list[str]:
        names = {"in_": "in"}
        return [names.get(f, f) for f in self.model_fields_set if f != "path"]

    @property
    def operator(self) -> str:
        return self.operators[0]


class AllOf(_Model):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Model):
    any: list[Condition] = Field(min_length=1)


class NotOf(_Model):
    not_: Condition = Field(alias="not")


def _condition_tag(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("all", "any", "not"):
            if key in value:
                return "=" + key
    elif isinstance(value, AllOf | AnyOf | NotOf):
        return "=" + type(value).__name__.lower()[:3]
    return "=cmp"


Condition = Annotated[
    Annotated[Comparison, Tag("=cmp")] | Annotated[AllOf, Tag("=all")] | Annotated[AnyOf, Tag("=any")]
    | Annotated[NotOf, Tag("=not")],
    Discriminator(_condition_tag),
]  # fmt: skip


# ---- trigger ------------------------------------------------------------------------------------


class AudienceTrigger(_Model):
    key: str = Field(min_length=1, description="the audience's computation key, e.g. cart_abandoners_7d")
    # Not `on`: YAML 1.1 reads a bare `on` key as the boolean true.
    membership: Literal["entered", "exited", "any"] = "entered"


class JourneyTrigger(_Model):
    id: str | None = Field(default=None, min_length=1, description="journey_metadata.journey_id")
    step_key: str | None = Field(default=None, min_length=1, description="context.personas.computation_key")
    step_id: str | None = Field(default=None, min_length=1, description="journey_metadata.step_id")

    @model_validator(mode="after")
    def _something(self) -> JourneyTrigger:
        if not (self.id or self.step_key or self.step_id):
            raise _rule(
                "a journey trigger needs id, step_key or step_id", "add `step_key` (or `id`/`step_id`)"
            )
        return self


class ComputedTraitTrigger(_Model):
    key: str = Field(min_length=1)


EventType = Literal["track", "identify", "page", "screen", "group", "alias"]


class Trigger(_Model):
    """What makes a mapping fire: one of event / audience / journey / computed_trait, plus conditions."""

    type: EventType | None = None
    event: Annotated[
        tuple[str, ...] | None,
        WithJsonSchema(
            {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
        ),
    ] = Field(default=None, min_length=1, description="track event name(s)")
    audience: AudienceTrigger | None = None
    journey: JourneyTrigger | None = None
    computed_trait: ComputedTraitTrigger | None = None
    conditions: Condition | None = None

    @field_validator("event", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        kinds = [
            k for k in ("event", "audience", "journey", "computed_trait") if getattr(self, k) is not None
        ]
        if len(kinds) > 1:
            raise _rule(
                f"a trigger takes one of event, audience, journey, computed_trait; found {', '.join(kinds)}",
                "split it into one mapping per trigger, or move the extra test into `conditions`",
            )
        if not kinds and self.type is None:
            raise _rule(
                "the trigger matches nothing",
                "add `event`, `audience`, `journey`, `computed_trait` or `type`",
            )
        if self.event is not None and self.type not in (None, "track"):
            raise _rule("`event` names track events", "remove `type` or set it to track")
        return self


# ---- recipient, sender, content -----------------------------------------------------------------


class RecipientSpec(_Model):
    """Where the address comes from; by default the channel's search order (consumer.events.recipients)."""

    path: RecipientPath | None = None
    sources: tuple[RecipientPath, ...] | None = Field(default=None, min_length=1)
    template: Template | None = None
    default_region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> RecipientSpec:
        if sum(x is not None for x in (self.path, self.sources, self.template)) > 1:
            raise _rule("recipient takes one of path, sources, template", "keep only one of them")
        return self


def _messaging_service(value: str) -> str:
    found = _FRIENDLY_MG.search(value)
    return found.group(1) if found else value


class Sender(_Model):
    """Exactly one sender."""

    phone_number: Annotated[str, StringConstraints(pattern=E164)] | None = None
    short_code: Annotated[str, StringConstraints(pattern=SHORT_CODE)] | None = None
    alphanumeric_id: Annotated[str, StringConstraints(pattern=ALPHANUMERIC_ID)] | None = None
    messaging_service: (
        Annotated[str, BeforeValidator(_messaging_service), StringConstraints(pattern=MESSAGING_SERVICE_SID)]
        | None
    ) = None
    facebook_page_id: Annotated[str, StringConstraints(pattern=FACEBOOK_PAGE_ID)] | None = None

    @field_validator("short_code", "facebook_page_id", mode="before")
    @classmethod
    def _digits(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _exactly_one(self) -> Sender:
        if len(self.model_fields_set) != 1:
            raise _rule(
                "a sender needs exactly one of phone_number, short_code, alphanumeric_id, messaging_service, "
                "facebook_page_id",
                "keep exactly one sender key",
            )
        return self

    @property
    def field(self) -> str:
        return next(iter(self.model_fields_set))

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


ContentType = Literal[
    "twilio/text", "twilio/media", "twilio/quick-reply", "twilio/call-to-action", "twilio/list-picker",
    "twilio/card", "whatsapp/card", "whatsapp/authentication", "twilio/catalog", "twilio/carousel",
]  # fmt: skip


class TemplateContent(_Model):
    """A Twilio Content Template; every variable is rendered to a string."""

    content_sid: Annotated[str, StringConstraints(pattern=CONTENT_SID)]
    content_type: ContentType | None = Field(default=None, description="declare it to check the channel")
    variables: dict[Annotated[str, StringConstraints(min_length=1)], Template] = Field(default_factory=dict)

    @field_validator("variables", mode="before")
    @classmethod
    def _as_text(cls, value: object) -> object:
        # YAML turns `1: x` into an int key and `x: 5` into an int value; Twilio wants strings throughout.
        if isinstance(value, dict):
            return {str(k): v if isinstance(v, str) else _scalar_text(v) for k, v in value.items()}
        return value


class InlineContent(_Model):
    """A body template and up to 10 media URL templates."""

    body: Template | None = None
    media: tuple[Template, ...] = Field(default=(), max_length=MAX_MEDIA)

    @field_validator("media")
    @classmethod
    def _literal_urls(cls, value: tuple[Template, ...]) -> tuple[Template, ...]:
        for template in value:
            if template.literal is not None:
                _url(template.literal)
        return value


def _content_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "=template" if "content_sid" in value else "=inline"
    return "=template" if isinstance(value, TemplateContent) else "=inline"


Content = Annotated[
    Annotated[TemplateContent, Tag("=template")] | Annotated[InlineContent, Tag("=inline")],
    Discriminator(_content_tag),
]


def _scalar_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# ---- options and policies -----------------------------------------------------------------------


class SendAt(_Model):
    """Schedule through a Messaging Service: `at` (a template giving an ISO-8601 time) plus `offset`."""

    at: Template
    offset: Duration = 0.0
    too_soon: Literal["skip", "send_now", "error"] = Field(
        default="skip", description="when the time is under 15 minutes ahead (past: skip or send now)"
    )


def _tags(value: object) -> object:
    if not isinstance(value, dict):
        return value
    if len(value) > 10:
        raise _rule(f"{len(value)} tags given, Twilio takes at most 10", "remove tags until 10 remain")
    out: dict[str, object] = {}
    for key, raw in value.items():
        if isinstance(raw, dict | list) or raw is None:
            raise _rule(f"tag {key!r} must be a text, number or boolean", "use a scalar value, not an object")
        for what, text in (("key", str(key)), ("value", str(_scalar_text(raw)))):
            # Keys are sent as written (only values are templates); fullmatch: `$` admits a final \n.
            literal = what == "key" or ("{{" not in text and "{%" not in text)
            if len(text) > 128 or (literal and not _TAG.fullmatch(text)):
                raise _rule(
                    f"tag {what} {text[:40]!r} must be 1-128 characters matching {TAG_TEXT}",
                    "use letters, digits, spaces, '_' and '-' only",
                )
        out[str(key)] = _scalar_text(raw)
    return out


def _callback(value: str) -> str:
    _url(value)
    if "_" in (urlsplit(value).hostname or ""):
        raise _rule(
            "Twilio rejects status callback hosts containing '_'", "use a host name without underscores"
        )
    return value


class Options(_Model):
    validity_period: int | None = Field(default=None, ge=1, le=36000, description="seconds in Twilio's queue")
    send_at: SendAt | None = None
    shorten_urls: bool | None = None
    status_callback: Annotated[str, AfterValidator(_callback)] | None = None
    tags: Annotated[dict[str, Template], BeforeValidator(_tags)] | None = None
    smart_encoded: bool | None = None


DEFAULT_DEDUP_KEY = "{{ mapping.id }}:{{ messageId }}:{{ recipient.address }}"


class Dedup(_Model):
    enabled: bool = True
    key: Template = Field(default_factory=lambda: Template(DEFAULT_DEDUP_KEY))
    window: Duration = Field(default=4 * 3600.0, gt=0)


class QuietHours(_Model):
    """Local times in the recipient's zone between which nothing is sent (may span midnight)."""

    start: dt.time
    end: dt.time
    action: Literal["hold", "drop"] = "hold"
    default_timezone: TimeZone = Field(description="used when the event carries no valid time zone")


class FrequencyCapPolicy(_Model):
    """At most `max` messages per recipient per `per`, counted per `key` (default: the mapping id)."""

    max: int = Field(ge=1)
    per: Duration = Field(gt=0)
    key: str = Field(default="", description="mappings sharing a key share one cap; default: the mapping id")


class Policies(_Model):
    consent: Literal["require_subscribed", "allow_unknown", "ignore"] = "require_subscribed"
    dedup: Dedup = Field(default_factory=Dedup)
    quiet_hours: QuietHours | None = None
    frequency_cap: FrequencyCapPolicy | None = None


class Mapping(_Model):
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


class MappingFile(_Model):
    """A mapping file: `mappings: [...]`."""

    version: Literal[1] = 1
    mappings: list[Mapping] = Field(default_factory=list)


# ---- rules across fields ------------------------------------------------------------------------

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
        channels = CONTENT_TYPES[content.content_type]
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


def _inline_rules(channel: Channel, content: InlineContent) -> list[Finding]:
    found: list[Finding] = []
    body = content.body.literal if content.body is not None else None
    if body is not None and not body.strip():
        found.append(
            ("content.body", "the body is empty", "write the message text, or remove `body` and send media")
        )
    elif content.body is None and not content.media:
        found.append(("content", "an inline message needs a body or media", "add `content.body`"))
    if body is not None and len(body) > MAX_BODY:
        found.append((
            "content.body", f"the body is {len(body)} characters, Twilio takes at most {MAX_BODY}",
            "shorten the text (or send a link)",
        ))  # fmt: skip
    if channel is Channel.SMS and content.media:
        found.append(("content.media", "SMS carries no media", "set channel: mms, or remove content.media"))
    if channel is Channel.MMS and not content.media:
        found.append(
            ("content.media", "an MMS needs at least one media URL", "add content.media, or use channel: sms")
        )
    if channel is Channel.WHATSAPP and len(content.media) > 1:
        found.append(("content.media", "WhatsApp takes one media file per message", "keep one media URL"))
    return found


# ---- loading ------------------------------------------------------------------------------------

_PATTERN_FIXES = {
    "phone_number": "write the number in E.164, e.g. +14155550100 (short codes go in `short_code`)",
    "short_code": "write the 5- or 6-digit short code, e.g. 89757",
    "alphanumeric_id": "use 1-11 letters, digits or spaces, with at least one letter",
    "messaging_service": "use the MG… SID (MG + 32 hex) or 'Friendly name [MG…]'",
    "content_sid": "use the Content Template's HX… SID (HX + 32 hex)",
    "facebook_page_id": "use the numeric Facebook Page ID",
    "id": "start with a letter or digit, then letters, digits, '_', '.', '-' (at most 64)",
    "default_region": "use an ISO 3166 two-letter region such as US",
}


def _fix(error: Any, field: str) -> str:  # noqa: PLR0911  (one return per error kind reads best)
    ctx = error.get("ctx") or {}
    if "fix" in ctx:
        return str(ctx["fix"])
    kind, last = error["type"], field.rsplit(".", 1)[-1]
    if kind == "string_pattern_mismatch":
        return _PATTERN_FIXES.get(last, "match the pattern")
    if kind == "missing":
        return f"add `{last}`"
    if kind == "extra_forbidden":
        return f"remove `{last}` or correct its spelling (see schemas/mapping.schema.json)"
    if kind in ("literal_error", "enum"):
        return "use one of the values listed"
    if kind in ("too_long", "too_short"):
        return "change the number of items as stated"
    if kind.startswith(("greater_than", "less_than")):
        return "use a value within the stated range"
    return "use the type and shape given in schemas/mapping.schema.json"


def _problem(source: str, mapping_id: str, field: str, message: str, fix: str) -> str:
    return f"{source}: mapping {mapping_id!r}: {field or '(mapping)'}: {message}. Fix: {fix}."


def _try(build: Callable[[], Any]) -> Any:
    try:
        return build()
    except (ValidationError, ValueError):
        return None


def _sender_shape(raw: object) -> Sender | None:
    """The sender's kind even when its value is malformed, so channel rules still report."""
    try:
        return Sender.model_validate(raw)
    except ValidationError:
        if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in Sender.model_fields:
            return Sender.model_construct(None, **{str(k): str(v) for k, v in raw.items()})
        return None


def _options_shape(raw: object) -> Options | None:
    """The scheduling switches even when another option is invalid."""
    try:
        return Options.model_validate(raw)
    except ValidationError:
        if not isinstance(raw, dict):
            return None
        return Options.model_construct(None, send_at=raw.get("send_at"), shorten_urls=raw.get("shorten_urls"))


def _check_one(raw: Any, source: str, index: int) -> tuple[Mapping | None, list[str]]:
    mapping_id = (
        str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") is not None else f"#{index + 1}"
    )
    if not isinstance(raw, dict):
        return None, [_problem(source, mapping_id, "", "a mapping must be an object", "write `- id: …` keys")]
    problems: list[str] = []
    mapping: Mapping | None = None
    try:
        mapping = Mapping.model_validate(raw)
        findings = cross_check(
            mapping.channel, mapping.sender, mapping.content, mapping.options, mapping.recipient
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"] if not str(p).startswith("="))
            problems.append(_problem(source, mapping_id, field, error["msg"].rstrip("."), _fix(error, field)))
        from pydantic import TypeAdapter

        findings = cross_check(
            _try(lambda: Channel(str(raw.get("channel")))),
            _try(lambda: _sender_shape(raw.get("sender"))),
            _try(lambda: TypeAdapter(Content).validate_python(raw.get("content"))),
            _try(lambda: _options_shape(raw.get("options") or {})),
            _try(lambda: RecipientSpec.model_validate(raw.get("recipient") or {})),
        )
    problems += [_problem(source, mapping_id, *finding) for finding in findings]
    return (mapping if not problems else None), problems


def parse_mappings(data: object, source: str = "<memory>") -> tuple[tuple[Mapping, ...], list[str]]:
    """Validate a parsed mapping document; return the valid mappings and every problem found."""
    if isinstance(data, list):
        data = {"mappings": data}
    if not isinstance(data, dict) or not isinstance(data.get("mappings", []), list):
        return (), [
            f"{source}: the file must hold `mappings: [...]`. Fix: put the mappings under a `mappings:` list."
        ]
    problems = [
        f"{source}: top-level key {key!r} is not allowed. Fix: keep only `version` and `mappings`."
        for key in data if key not in ("version", "mappings")
    ]  # fmt: skip
    if data.get("version", 1) != 1:
        problems.append(f"{source}: version {data.get('version')!r} is not supported. Fix: set `version: 1`.")
    mappings: list[Mapping] = []
    seen: set[str] = set()
    for index, raw in enumerate(data.get("mappings") or []):
        mapping, found = _check_one(raw, source, index)
        problems += found
        if mapping is not None:
            if mapping.id in seen:
                problems.append(
                    _problem(
                        source, mapping.id, "id", "the id is used twice", "give every mapping its own id"
                    )
                )
            seen.add(mapping.id)
            mappings.append(mapping)
    return tuple(mappings), problems


def load_mappings(*paths: Path) -> tuple[Mapping, ...]:
    """Load and validate mapping files; raise `MappingError` listing every problem in all of them."""
    import yaml

    origins: list[tuple[Path, Mapping]] = []
    problems: list[str] = []
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(f"{path}: cannot read the file ({exc.strerror}). Fix: check the path.")
            continue
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            problems.append(
                f"{path}: invalid YAML{line}: {getattr(exc, 'problem', exc)}. Fix: correct the YAML."
            )
            continue
        found, file_problems = parse_mappings(data if data is not None else {"mappings": []}, str(path))
        problems += file_problems
        origins += [(path, mapping) for mapping in found]
    files: dict[str, list[str]] = {}
    for path, mapping in origins:
        files.setdefault(mapping.id, []).append(str(path))
    problems += [
        f"mapping id {mid!r} is defined in {' and '.join(where)}. Fix: give every mapping its own id."
        for mid, where in files.items() if len(set(where)) > 1
    ]  # fmt: skip
    if problems:
        raise MappingError(
            f"{len(problems)} problem(s) in {', '.join(map(str, paths))}", problems=tuple(problems)
        )
    return tuple(mapping for _, mapping in origins)


# ---- published JSON Schema ----------------------------------------------------------------------

SCHEMA_ID = "https://github.com/kafka-twilio/kafka-twilio/blob/main/schemas/mapping.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a mapping file, for editors (yaml-language-server) and CI checks."""
    schema = MappingFile.model_json_schema(by_alias=True)
    schema.update(title="kafka-twilio message mappings", description=(
        "Which events send which Twilio message to whom. Validate with `kafka-twilio validate FILE`."
    ))  # fmt: skip
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render_json_schema() -> str:
    """The schema file's exact text (regenerate with `python -m consumer.mappings.model > schemas/…`)."""
    import json

    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_json_schema())
