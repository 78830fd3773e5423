"""The field types mapping files are made of: Segment's and Twilio's formats, paths, durations, zones.

Each type validates one field on its own and raises a `mapping_rule` error that carries the fix, so
the loader can report "field: problem. Fix: …" without knowing the rule.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from consumer.events.numbers import js_number
from consumer.events.recipients import CONTEXT_EXTERNAL_IDS, EXTERNAL_IDS
from consumer.mappings.templating import parse_duration
from consumer.zones import find_zone

# Segment's exact regexes (reference/segment-destination.md), plus Twilio's sender formats.
E164 = r"^\+[1-9]\d{1,14}$"
SHORT_CODE = r"^[1-9]\d{4,5}$"
ALPHANUMERIC_ID = r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$"
MESSAGING_SERVICE_SID = r"^MG[0-9a-fA-F]{32}$"
CONTENT_SID = r"^HX[0-9a-fA-F]{32}$"
TAG_TEXT = r"^[a-zA-Z0-9 _-]+$"
FACEBOOK_PAGE_ID = r"^[0-9]{1,32}$"
MAPPING_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TAG = re.compile(TAG_TEXT)
NANP_TOLL_FREE = frozenset({"800", "833", "844", "855", "866", "877", "888"})
MAX_BODY = 1600
MAX_MEDIA = 10

#: Where condition and recipient paths may start.
PATH_ROOTS = frozenset(
    {"properties", "traits", "context", "integrations", "audience", "journey", "computed_trait", "event",
     "messageId", "userId", "anonymousId", "type", "timestamp"}
)  # fmt: skip
RECIPIENT_ROOTS = ("properties", "traits", "context", "integrations")


def rule(message: str, fix: str, **ctx: Any) -> PydanticCustomError:
    """A validation error that carries its fix (the loader prints both)."""
    return PydanticCustomError("mapping_rule", message, {**ctx, "fix": fix})


class Model(BaseModel):
    """Every mapping model: immutable, unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid", regex_engine="python-re")


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL Twilio can fetch: no whitespace or control characters (which urlsplit
    silently strips or keeps) and a host urlsplit can parse (a bad IPv6 literal raises)."""
    if any(c <= " " or c == "\x7f" for c in url):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def check_url(value: str) -> str:
    if not is_http_url(value):
        raise rule(f"{value!r} is not an http(s) URL", "write an absolute URL such as https://example.com/x")
    return value


def scalar_text(value: object) -> object:
    """YAML scalars as Twilio wants them: booleans as true/false, numbers as JavaScript prints them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    return value


def _duration(value: object) -> object:
    if isinstance(value, str):
        seconds = parse_duration(value)
        if seconds is None:
            raise rule(f"{value!r} is not a duration", "write seconds (90) or a duration like 15m, 4h, 1d12h")
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
        raise rule(
            f"path {value!r} starts from unknown root {root!r}",
            f"start the path from one of {', '.join(sorted(PATH_ROOTS))}",
        )
    return value


DottedPath = Annotated[str, StringConstraints(min_length=1), AfterValidator(_path)]


def _recipient_path(value: str) -> str:
    if value in (EXTERNAL_IDS, CONTEXT_EXTERNAL_IDS) or value.split(".", 1)[0] in RECIPIENT_ROOTS:
        return value
    raise rule(
        f"recipient path {value!r} is not searchable",
        f"start it from {', '.join(RECIPIENT_ROOTS)}, or use {EXTERNAL_IDS} / {CONTEXT_EXTERNAL_IDS}",
    )


RecipientPath = Annotated[str, StringConstraints(min_length=1), AfterValidator(_recipient_path)]


def _zone(value: str) -> str:
    if find_zone(value) is None:
        raise rule(f"unknown time zone {value!r}", "use an IANA name such as America/New_York")
    return value


TimeZone = Annotated[str, AfterValidator(_zone)]
