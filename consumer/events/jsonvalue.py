"""JSON record values: one UTF-8 JSON object per record, checked before anything reads it."""

from __future__ import annotations

import json
import re
from typing import Any

from consumer.errors import DecodeError
from consumer.events.model import JSON


def _reject_constant(name: str) -> JSON:
    raise ValueError(f"{name} is not valid JSON")


def parse_object(value: bytes) -> dict[str, Any]:
    """The JSON object in `value`; DecodeError (invalid_utf8, invalid_json, not_an_event) otherwise."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"the value is not valid UTF-8 ({exc.reason} at byte {exc.start}); Segment JSON must be UTF-8",
            reason="invalid_utf8",
        ) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise DecodeError(f"the value is not valid JSON: {exc}", reason="invalid_json") from None
    except RecursionError:
        raise DecodeError("the JSON nests values too deeply to decode", reason="invalid_json") from None
    if not isinstance(data, dict):
        raise DecodeError(
            f"the JSON value is a {type(data).__name__}, not an object; send one Segment event per record",
            reason="not_an_event",
        )
    if _SURROGATE_ESCAPE.search(text):
        _check_surrogates(data)
    return data


# `\ud83d\ude00` is a valid escaped pair, but JSON lets a lone half through (`"\ud800"`), and a string
# holding one cannot be encoded as UTF-8 later (a Twilio request, a dead-letter header). Only text
# that has such an escape at all is checked, so ordinary events pay nothing.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_surrogates(data: object) -> None:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DecodeError(
            f"the JSON holds a lone UTF-16 surrogate escape ({exc.object[exc.start : exc.end]!a}); every "
            "\\uD800-\\uDFFF escape must be half of a pair: fix the producer's JSON encoder",
            reason="invalid_json",
        ) from None
