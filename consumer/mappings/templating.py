"""Liquid templates for mappings: one environment, the filters users expect, compiled once at load.

A `Template` is parsed when the mapping file is loaded (syntax, unknown filters and unknown top-level
variables are load errors) and rendered many times on the hot path. Literal strings skip Liquid.
Strictness about missing variables is chosen per mapping at render time; both bindings share the
parsed nodes, so there is no second parse.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from liquid import BoundTemplate, Environment, FalsyStrictUndefined, Undefined
from liquid.builtin.output import Output, OutputNode
from liquid.exceptions import FilterArgumentError, LiquidError
from liquid.filter import with_context
from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from consumer.events.numbers import js_number
from consumer.zones import find_zone

#: Names a template may start from; anything else is a typo caught at load.
ROOTS = frozenset(
    {"properties", "traits", "context", "audience", "journey", "computed_trait", "recipient", "event",
     "mapping", "now", "messageId", "userId", "anonymousId", "type", "timestamp"}
)  # fmt: skip

_DURATION = re.compile(r"^\s*([+-])?\s*((?:\d+(?:\.\d+)?\s*[dhms]\s*)+)$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float | None:
    """Seconds in "90s", "15m", "4h", "1d12h" or "-24h"; None when it is not a duration."""
    match = _DURATION.match(text)
    if match is None:
        return None
    seconds = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(match.group(2)))
    return -seconds if match.group(1) == "-" else seconds


def parse_time(value: object, now: dt.datetime | None = None) -> dt.datetime | None:
    """A timezone-aware datetime from a datetime, ISO-8601 text, epoch seconds or "now"; else None."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int | float):
        try:
            parsed = dt.datetime.fromtimestamp(value, dt.UTC)
        except (OverflowError, ValueError, OSError):  # NaN, infinities, beyond year 9999
            return None
    elif isinstance(value, str):
        text = value.strip()
        if text in {"now", "today"}:
            return now
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _now(context: Any) -> dt.datetime | None:
    now = context.resolve("now", default=None)
    return now if isinstance(now, dt.datetime) else None


@with_context
def _date(value: object, fmt: object = "%Y-%m-%dT%H:%M:%SZ", *, context: Any) -> str:
    """`date` that understands ISO-8601 and uses the render's `now` rather than the wall clock."""
    if isinstance(value, Undefined) or value is None:
        return ""
    when = parse_time(value, _now(context))
    if when is None:
        return str(value)
    return when.strftime(str(fmt))


def _in_time_zone(value: object, zone: object) -> object:
    """Convert a time to an IANA time zone (`{{ properties.at | in_time_zone: "Europe/Paris" }}`)."""
    when = parse_time(value)
    if when is None:
        return value
    tz = find_zone(str(zone))
    if tz is None:
        raise FilterArgumentError(f"in_time_zone: unknown time zone {str(zone)[:64]!r}", token=None)
    try:
        return when.astimezone(tz)
    except OverflowError as exc:
        raise FilterArgumentError(f"in_time_zone: {value!r} is out of range in {zone!r}", token=None) from exc


@with_context
def _time_add(value: object, duration: object, *, context: Any) -> object:
    """Shift a time by a duration (`{{ properties.appointment_at | time_add: "-24h" }}`)."""
    when = parse_time(value, _now(context))
    seconds = parse_duration(str(duration))
    if seconds is None:
        raise FilterArgumentError(
            f"time_add: {duration!r} is not a duration like '-24h' or '90m'", token=None
        )
    if when is None:
        return value
    try:
        return when + dt.timedelta(seconds=seconds)
    except OverflowError as exc:
        raise FilterArgumentError(f"time_add: {value!r} {duration!r} is out of range", token=None) from exc


class _Strict(FalsyStrictUndefined):
    """Missing variables fail when printed, are falsy in `if`, and give way to `default`."""

    force_liquid_default = True


class _JsNumberOutput(OutputNode):
    """`{{ … }}` printing numbers as JavaScript does (Segment's templates were written against it)."""

    __slots__ = ()

    def render_to_output(self, context: Any, buffer: Any) -> int:
        value = self.expression.evaluate(context)
        if isinstance(value, float):
            return int(buffer.write(js_number(value)))
        return super().render_to_output(context, buffer)

    async def render_to_output_async(self, context: Any, buffer: Any) -> int:
        value = await self.expression.evaluate_async(context)
        if isinstance(value, float):
            return int(buffer.write(js_number(value)))
        return await super().render_to_output_async(context, buffer)


class _JsOutput(Output):
    node_class = _JsNumberOutput


class _Env(Environment):
    # Bound the work a template can do on the hot path, whatever the event holds.
    loop_iteration_limit: ClassVar[int | None] = 10_000
    output_stream_limit: ClassVar[int | None] = 64_000


def _environment(undefined: type[Undefined]) -> Environment:
    env = _Env(undefined=undefined)
    env.add_tag(_JsOutput)
    env.add_filter("date", _date)
    env.add_filter("in_time_zone", _in_time_zone)
    env.add_filter("time_add", _time_add)
    return env


LENIENT_ENV = _environment(Undefined)
STRICT_ENV = _environment(_Strict)


# Outputs like `{{ a.b.0.c }}` or `{{ a.b | default: "x" | upcase }}` (most mapping templates) are
# rendered without Liquid; anything else, or any value they cannot print, goes through Liquid.
_OUTPUT = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PATH = re.compile(r"^[A-Za-z_][\w-]*(?:\.[\w-]+)*$")
_FILTER = re.compile(r"""^(default|upcase|downcase|capitalize|strip)(?:\s*:\s*(?:"([^"]*)"|'([^']*)'))?$""")
_STRING_FILTERS: dict[str, Callable[[str], str]] = {
    "upcase": str.upper, "downcase": str.lower, "capitalize": str.capitalize, "strip": str.strip,
}  # fmt: skip
_FALLBACK = object()
_Filter = tuple[str, str | None]  # (name, literal argument)
_Part = tuple[str, tuple[str, ...] | None, tuple[_Filter, ...]]  # (text before, path, filters)


def _simple_output(inner: str) -> tuple[tuple[str, ...], tuple[_Filter, ...]] | None:
    path, *filters = (piece.strip() for piece in inner.split("|"))
    if not _PATH.match(path):
        return None
    parsed: list[_Filter] = []
    for text in filters:
        match = _FILTER.match(text)
        if match is None:
            return None
        name, arg = match.group(1), match.group(2) if match.group(2) is not None else match.group(3)
        if (name == "default") is (arg is None):
            return None
        parsed.append((name, arg))
    return tuple(path.split(".")), tuple(parsed)


def _simple_parts(source: str) -> tuple[_Part, ...] | None:
    """Split a template made only of text and simple outputs; None when it needs Liquid."""
    if "{%" in source:
        return None
    parts: list[_Part] = []
    pos = 0
    for match in _OUTPUT.finditer(source):
        text = source[pos : match.start()]
        output = _simple_output(match.group(1))
        if output is None or "{{" in text or "}}" in text:
            return None
        parts.append((text, *output))
        pos = match.end()
    tail = source[pos:]
    if "{{" in tail or "}}" in tail:
        return None
    parts.append((tail, None, ()))
    return tuple(parts)


def _lookup(scope: Mapping[str, object], path: tuple[str, ...]) -> object:
    value: object = scope
    for key in path:
        # Plain dicts first: the ABC isinstance check costs more than the lookup itself.
        if type(value) is dict or (isinstance(value, Mapping) and not isinstance(value, Undefined)):
            value = value.get(key, _FALLBACK)
        else:
            return _FALLBACK  # lists need `[0]`, which only Liquid parses
        if value is _FALLBACK:
            return value
    return value


def _blank(value: object) -> bool:
    """What Liquid's `default` replaces: undefined, nil, false and empty strings, arrays and maps."""
    if value is _FALLBACK or value is None or value is False:
        return True
    return isinstance(value, str | list | tuple | Mapping) and len(value) == 0


def _text(value: object) -> str | None:
    """Liquid's output of a scalar; None for anything Liquid should print itself."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    if value is None:
        return ""
    return None


class Template:
    """A compiled Liquid template, validated at load; render with a scope of JSON-ish values."""

    __slots__ = ("_lenient", "_simple", "_strict", "literal", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.literal: str | None = None
        self._lenient: BoundTemplate | None = None
        self._strict: BoundTemplate | None = None
        self._simple: tuple[_Part, ...] | None = None
        if "{{" not in source and "{%" not in source:
            self.literal = source
            return
        bound = LENIENT_ENV.from_string(source)
        analysis = bound.analyze()
        unknown_filters = sorted(set(analysis.filters) - set(LENIENT_ENV.filters))
        if unknown_filters:
            raise ValueError(f"unknown filter(s) {', '.join(unknown_filters)}")
        unknown_roots = sorted(str(name) for name in set(analysis.globals) - ROOTS)
        if unknown_roots:
            raise ValueError(
                f"unknown variable(s) {', '.join(unknown_roots)}; templates start from one of "
                f"{', '.join(sorted(ROOTS))}"
            )
        self._lenient = bound
        self._strict = BoundTemplate(STRICT_ENV, bound.nodes)
        self._simple = _simple_parts(source)

    def _render_simple(self, parts: tuple[_Part, ...], scope: Mapping[str, object]) -> str | None:
        out: list[str] = []
        for text, path, filters in parts:
            out.append(text)
            if path is None:
                continue
            value = _lookup(scope, path)
            for name, arg in filters:
                if name == "default":
                    value = arg if _blank(value) else value
                    continue
                as_text = None if value is _FALLBACK else _text(value)
                if as_text is None:
                    return None
                value = _STRING_FILTERS[name](as_text)
            rendered = None if value is _FALLBACK else _text(value)
            if rendered is None:
                return None  # undefined (strict mode must raise) or a non-scalar: let Liquid decide
            out.append(rendered)
        return "".join(out)

    def render(self, scope: Mapping[str, object], *, strict: bool) -> str:
        """Render; raises `liquid.exceptions.LiquidError` (translated by the caller) on failure."""
        if self.literal is not None:
            return self.literal
        if self._simple is not None:
            fast = self._render_simple(self._simple, scope)
            if fast is not None:
                return fast
        bound = self._strict if strict else self._lenient
        assert bound is not None
        return bound.render(scope)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: type[Any], handler: GetCoreSchemaHandler) -> Any:
        def compile_(text: str) -> Template:
            try:
                return cls(text)
            except LiquidError as exc:
                message = str(exc).splitlines()[0]
                raise PydanticCustomError(
                    "template", "invalid Liquid template: {error}",
                    {"error": message, "fix": "correct the template syntax (see the Liquid docs)"},
                ) from None  # fmt: skip
            except ValueError as exc:
                raise PydanticCustomError(
                    "template", "invalid Liquid template: {error}",
                    {"error": str(exc), "fix": "use the filters and variables listed in the docs"},
                ) from None  # fmt: skip

        return core_schema.no_info_after_validator_function(
            compile_,
            core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda t: t.source),
        )


__all__ = ["LENIENT_ENV", "ROOTS", "STRICT_ENV", "LiquidError", "Template", "parse_duration", "parse_time"]
