"""Segment's FQL subscription triggers, translated into a mapping's trigger and conditions.

Handles the forms Segment's trigger builder writes: `type = "track"`, `event = "X"`, property
comparisons (`=`, `!=`, `<`, `<=`, `>`, `>=`, `= null`), `contains(a, "b")`, `match(a, "glob")`, and
`and` / `or` / `not` (`!`) with parentheses. Anything else raises `Untranslatable`, naming what could
not be read, so the importer lists it instead of writing a trigger that fires differently.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|<=|>=|=|<|>|\(|\)|,|!)'
    r"|(?P<word>[A-Za-z_$][\w.$-]*))"
)
_OPS = {"=": "equals", "!=": "not_equals", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_EVENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
#: FQL's top-level fields and where they are in our event paths.
_ENVELOPE = {"event": "event.event", "type": "type", "userId": "userId", "anonymousId": "anonymousId",
             "messageId": "messageId", "timestamp": "timestamp"}  # fmt: skip
_ROOTS = ("properties.", "traits.", "context.", "integrations.")


class Untranslatable(ValueError):
    """An FQL form the importer does not translate; the message says which."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise Untranslatable(f"cannot read {text[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        keyword = kind == "word" and value.lower() in ("and", "or", "not")
        out.append(("word", value.lower()) if keyword else (kind, value))
        pos = match.end()
    return out


class _Parser:
    """Recursive descent: or > and > not > comparison, each node a dict in our conditions' shape."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise Untranslatable("the trigger ends too early")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        if self.take()[1] != value:
            raise Untranslatable(f"expected {value!r}")

    def parse(self) -> dict[str, Any]:
        node = self.either()
        if self.peek() is not None:
            raise Untranslatable(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def either(self) -> dict[str, Any]:
        parts = [self.both()]
        while self.peek() == ("word", "or"):
            self.take()
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else {"any": parts}

    def both(self) -> dict[str, Any]:
        parts = [self.negation()]
        while self.peek() == ("word", "and"):
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else {"all": parts}

    def negation(self) -> dict[str, Any]:
        if self.peek() in (("op", "!"), ("word", "not")):
            self.take()
            return {"not": self.negation()}
        if self.peek() == ("op", "("):
            self.take()
            node = self.either()
            self.expect(")")
            return node
        return self.comparison()

    def comparison(self) -> dict[str, Any]:
        kind, word = self.take()
        if kind != "word":
            raise Untranslatable(f"expected a field, found {word!r}")
        if self.peek() == ("op", "("):
            return self.function(word)
        op = self.take()[1]
        if op not in _OPS:
            raise Untranslatable(f"operator {op!r} is not translated")
        value = self.literal()
        path = _path(word)
        if value is None:
            if op not in ("=", "!="):
                raise Untranslatable(f"{word} {op} null has no meaning")
            return {"path": path, "exists": op == "!="}
        if op in (">", ">=", "<", "<=") and not isinstance(value, int | float):
            raise Untranslatable(f"{word} {op} {value!r}: only numbers are compared by order")
        return {"path": path, _OPS[op]: value}

    def function(self, name: str) -> dict[str, Any]:
        if name not in ("contains", "match"):
            raise Untranslatable(f"function {name}() is not translated")
        self.expect("(")
        kind, field = self.take()
        if kind != "word":
            raise Untranslatable(f"{name}() takes a field first")
        self.expect(",")
        arg = self.literal()
        self.expect(")")
        if not isinstance(arg, str):
            raise Untranslatable(f"{name}() takes a string")
        if name == "contains":
            return {"path": _path(field), "contains": arg}
        return {"path": _path(field), "matches": _glob(arg)}

    def literal(self) -> object:
        kind, text = self.take()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "word" and text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        raise Untranslatable(f"expected a value, found {text!r}")


def _glob(pattern: str) -> str:
    """FQL's match() glob (`*`, `?`, over the whole value) as an anchored regular expression."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return r"\A" + "".join(parts) + r"\Z"


def _path(field: str) -> str:
    if field in _ENVELOPE:
        return _ENVELOPE[field]
    if field.startswith(_ROOTS):
        return field
    raise Untranslatable(f"field {field!r} is not one our events carry under that name")


def translate_trigger(fql: str) -> dict[str, Any]:
    """A mapping `trigger` for an FQL trigger: `type`/`event` from its top-level conjuncts, the rest
    as `conditions`. Raises Untranslatable."""
    tree = _Parser(fql).parse()
    conjuncts = tree.get("all", [tree])
    trigger: dict[str, Any] = {}
    rest: list[dict[str, Any]] = []
    for node in conjuncts:
        names = _event_names(node)
        if node.get("path") == "type" and node.get("equals") in _EVENT_TYPES and "type" not in trigger:
            trigger["type"] = node["equals"]
        elif names is not None and "event" not in trigger:
            trigger["event"] = names[0] if len(names) == 1 else names
        else:
            rest.append(node)
    if "event" in trigger and trigger.get("type", "track") != "track":
        raise Untranslatable("an event name with a type other than track matches nothing")
    if not trigger:
        raise Untranslatable("the trigger names no event type or event; ours must name one")
    if rest:
        trigger["conditions"] = rest[0] if len(rest) == 1 else {"all": rest}
    return trigger


def _event_names(node: dict[str, Any]) -> list[str] | None:
    """`event = "X"` or a disjunction of such: the names; else None."""
    if node.get("path") == "event.event" and isinstance(node.get("equals"), str):
        return [node["equals"]]
    if "any" in node:
        names = [_event_names(n) for n in node["any"]]
        if all(n is not None for n in names):
            return [name for n in names for name in n or []]
    return None
