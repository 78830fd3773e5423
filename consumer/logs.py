"""Structured JSON logs with phone numbers masked (invariant 9).

One JSON object per line on stderr: `ts`, `level`, `logger`, `msg`, then any `extra=` fields
(topic, partition, offset, mapping, message_id, twilio_code, ...). A filter on the handler masks
anything that looks like a phone number in the message, the extras and the traceback, and redacts
extras whose name says they hold a secret. It is a safety net: code should still log masked values.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from pydantic import SecretBytes, SecretStr

from consumer.errors import SettingsError

REDACTED = "**********"

# Channel prefixes Twilio puts in front of an address ("whatsapp:+14155550123").
_CHANNEL_PREFIX = re.compile(r"^(whatsapp|rcs|sms|mms|tel|messenger):", re.IGNORECASE)

# Phone-number shapes inside free text. Each alternative is bounded so that ids (SM…, HX…, UUIDs)
# and ISO dates are left alone: a lookbehind refuses a digit or letter run that started earlier.
_PHONE_IN_TEXT = re.compile(
    r"""
    (?<![\w+])\+\d(?:[\s().-]{0,2}\d){6,14}(?!\d)   # +E.164, optionally spaced: +1 (415) 555-0123
    | (?<![\w.:-])\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?![\w-])  # NANP formatted: (415) 555-0123
    | (?<![\w.:+-])\d{10,15}(?![\w.])               # a bare run of 10-15 digits: 4155550123
    """,
    re.VERBOSE,
)

# Extras whose name says they carry a secret are never printed, whatever their type.
_SECRET_NAME = re.compile(
    r"secret|password|passwd|authorization|auth_token|api_key|credential", re.IGNORECASE
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def _mask_digits(number: str) -> str:
    """Star the middle digits of one number, keeping its separators, a short head and the last two."""
    digits = sum(ch.isdigit() for ch in number)
    if digits < 8:
        head = 0
    elif number.lstrip().startswith("+"):
        head = 4  # "+1415": country and area code say little about a person
    else:
        head = 3
    tail = 2
    out: list[str] = []
    seen = 0
    for ch in number:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen <= head or seen > digits - tail else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_phone(address: str) -> str:
    """Mask one address: "+14155550123" -> "+1415*****23", "whatsapp:+14155550123" -> "whatsapp:+1415*****23".

    Anything that is not a phone number (a Messenger id, a typo) keeps only its last two characters.
    """
    match = _CHANNEL_PREFIX.match(address)
    prefix, rest = (address[: match.end()], address[match.end() :]) if match else ("", address)
    if rest and re.fullmatch(r"\+?[\d\s().-]+", rest) and any(ch.isdigit() for ch in rest):
        return prefix + _mask_digits(rest)
    if len(rest) <= 2:
        return prefix + "*" * len(rest)
    return prefix + "*" * (len(rest) - 2) + rest[-2:]


def mask_text(text: str) -> str:
    """Mask every phone-number-looking run inside free text (error messages, log lines)."""
    return _PHONE_IN_TEXT.sub(lambda m: _mask_digits(m.group(0)), text)


def _scrub(value: Any, depth: int = 0) -> Any:
    """Return `value` with phone numbers masked in every string and secrets redacted, recursively."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, Mapping) and depth < 5:
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_NAME.search(k) else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset) and depth < 5:
        return [_scrub(v, depth + 1) for v in value]
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return mask_text(text)


class MaskingFilter(logging.Filter):
    """Mask phone numbers in the message, extras and traceback; redact secret-named extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  a bad format string is logging's to report, not ours to raise
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = None
        for name, value in list(vars(record).items()):
            if name in _RECORD_ATTRS:
                continue
            setattr(record, name, REDACTED if _SECRET_NAME.search(name) else _scrub(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def _json_default(value: object) -> object:
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extras, and exc/stack when present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRS and name not in out:
                out[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=_json_default, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One sentence a line for people at a terminal: "warning: <message> (key=value, …)"."""

    def format(self, record: logging.LogRecord) -> str:
        extras = [
            f"{k}={v}" for k, v in vars(record).items() if k not in _RECORD_ATTRS and v not in (None, "")
        ]
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        return text + (f" ({', '.join(extras)})" if extras else "")


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure_logging(level: str = "INFO", stream: IO[str] | None = None, *, style: str = "json") -> None:
    """Send every log record to `stream` (stderr by default), masked: JSON lines (the service), or
    `style="text"` sentences (the demo, at a terminal).

    Calling it again replaces the handler it installed before; other handlers are left alone.
    """
    name = level.strip().upper()
    if name not in _LEVELS:
        raise SettingsError(f"CONSUMER_LOG_LEVEL: unknown level {level!r}; use one of {', '.join(_LEVELS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_kafka_twilio", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(TextFormatter() if style == "text" else JsonFormatter())
    # On the handler, not the logger: logger filters do not see records propagated from child loggers.
    handler.addFilter(MaskingFilter())
    handler._kafka_twilio = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(name)
