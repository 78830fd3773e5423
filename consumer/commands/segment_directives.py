"""Segment's mapping directives (`@path`, `@template`, `@if`) as our dotted paths and Liquid.

A Segment action setting is a literal or a directive object: `{"@path": "$.properties.phone"}`,
`{"@template": "Hi {{properties.first_name}}"}`, `{"@if": {"exists": {"@path": …}, "then": …,
"else": …}}` (or `"blank"`). These become templates our renderer prints the same way; every other
directive (`@arrayPath`, `@case`, `@replace`, `@json`, …) raises `Untranslatable` so the importer
lists the field rather than guessing.
"""

from __future__ import annotations

import re

from consumer.commands.segment_fql import Untranslatable
from consumer.events.numbers import js_number

_SEGMENT = re.compile(r"^[A-Za-z_$][\w$-]*$")
_INDEX = re.compile(r"^(?P<key>[A-Za-z_$][\w$-]*)(?P<idx>(?:\[\d+\])+)$")
_ROOTS = frozenset({"properties", "traits", "context", "integrations", "userId", "anonymousId",
                    "messageId", "type", "timestamp"})  # fmt: skip
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}#^/!>&]+?)\s*\}\}")


def path_parts(path: str) -> list[str]:
    """`$.properties.images[0]` → ["properties", "images", "0"], as our event paths read it."""
    text = path.strip()
    text = text[2:] if text.startswith("$.") else text
    parts: list[str] = []
    for piece in text.split("."):
        indexed = _INDEX.match(piece)
        if indexed:
            parts.append(indexed.group("key"))
            parts += re.findall(r"\d+", indexed.group("idx"))
        elif _SEGMENT.match(piece):
            parts.append(piece)
        else:
            raise Untranslatable(f"path {path!r}: only plain dotted names and [n] indexes are translated")
    if not parts:
        raise Untranslatable(f"path {path!r} is empty")
    if parts[0] == "event" and len(parts) == 1:
        return ["event", "event"]  # the track event's name, under our whole-event view
    if parts[0] not in _ROOTS:
        return ["event", *parts]  # other envelope keys (receivedAt, sentAt, …) of the whole event
    return parts


def dotted(path: str) -> str:
    """The dotted path our conditions, recipients and media_from take."""
    return ".".join(path_parts(path))


def liquid_path(path: str) -> str:
    parts = path_parts(path)
    return parts[0] + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts[1:])


def _literal(text: str) -> str:
    # Segment sends literal text as written; Liquid must not read braces in it.
    return f"{{% raw %}}{text}{{% endraw %}}" if "{{" in text or "{%" in text else text


def _from_template(source: str) -> str:
    if re.search(r"\{\{\s*[#^/!>&{]", source):
        raise Untranslatable("@template sections, partials and triple braces are not translated")
    out, pos = [], 0
    for match in _PLACEHOLDER.finditer(source):
        out.append(_literal(source[pos : match.start()]))
        out.append(f"{{{{ {liquid_path(match.group(1))} }}}}")
        pos = match.end()
    out.append(_literal(source[pos:]))
    return "".join(out)


def _from_if(spec: object) -> str:
    if not isinstance(spec, dict) or not ({"exists", "blank"} & spec.keys()):
        raise Untranslatable("@if is translated with `exists` or `blank` only")
    test = "exists" if "exists" in spec else "blank"
    subject = spec[test]
    if not (isinstance(subject, dict) and set(subject) == {"@path"} and isinstance(subject["@path"], str)):
        raise Untranslatable(f"@if {test}: only an @path is translated as the subject")
    path = liquid_path(subject["@path"])
    condition = f"{path} != nil" if test == "exists" else f'{path} == nil or {path} == ""'
    then = template_of(spec["then"]) if "then" in spec else ""
    other = template_of(spec["else"]) if "else" in spec else ""
    return f"{{% if {condition} %}}{then}{{% else %}}{other}{{% endif %}}"


def template_of(value: object) -> str:
    """A Liquid template that renders what Segment would have put in the field."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return js_number(value)
    if isinstance(value, str):
        return _literal(value)
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        if name == "@path" and isinstance(arg, str):
            return f"{{{{ {liquid_path(arg)} }}}}"
        if name == "@template" and isinstance(arg, str):
            return _from_template(arg)
        if name == "@if":
            return _from_if(arg)
        raise Untranslatable(f"directive {name} is not translated")
    raise Untranslatable(f"a {type(value).__name__} value is not translated here")


def path_of(value: object) -> str | None:
    """The dotted path of a bare `@path` directive; None for anything else."""
    if isinstance(value, dict) and set(value) == {"@path"} and isinstance(value["@path"], str):
        return dotted(value["@path"])
    return None
