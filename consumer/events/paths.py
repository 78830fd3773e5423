"""Paths into records, and what an Avro schema says about them.

One syntax everywhere: the one Liquid templates use for variables, parsed by python-liquid itself
(no second parser to drift from it): dotted names with list indexes, `customer.phone`,
`lines[0].sku`, `attributes["odd key"]`. A path is a tuple of keys (str) and indexes (int).

`read` follows a path through a decoded record; `resolve` follows it through a writer schema (a
fastavro-parsed Avro schema) before any record is seen, so a typo is reported at start-up with the
fields that do exist. Both are pure.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liquid import Environment
from liquid.exceptions import LiquidError

Path = tuple[str | int, ...]
MISSING: Any = object()

_ENV = Environment()
_LEAVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


@functools.lru_cache(maxsize=4096)
def parse_path(text: str) -> Path:
    """The keys and indexes of `text`; ValueError saying what is wrong when it is not one path."""
    if not text.strip() or any(c in text for c in "{}%|"):
        raise ValueError(f"{text!r} is not a path: write dotted names with list indexes, e.g. customer.phone")
    try:
        found = _ENV.from_string("{{ " + text + " }}").analyze().variables
    except LiquidError as exc:
        raise ValueError(f"{text!r} is not a path ({str(exc).splitlines()[0]})") from None
    paths = [v.segments for vs in found.values() for v in vs]
    parts = [s for s in paths[0] if isinstance(s, str | int)] if len(paths) == 1 else []
    if not parts or len(parts) != len(paths[0]):
        raise ValueError(f"{text!r} is not one path: write dotted names with list indexes, e.g. lines[0].sku")
    return tuple(parts)


def show(path: Sequence[str | int]) -> str:
    """A path as written: `lines[0].sku`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "a").replace("-", "a").isalnum():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def read(value: Any, path: Sequence[str | int]) -> Any:
    """The value at `path` in a JSON-like value, or MISSING."""
    for part in path:
        if isinstance(value, Mapping) and isinstance(part, str):
            value = value.get(part, MISSING)
        elif isinstance(value, list | tuple) and isinstance(part, int) and -len(value) <= part < len(value):
            value = value[part]
        else:
            return MISSING
        if value is MISSING:
            return value
    return value


@dataclass(frozen=True)
class Resolution:
    """What a schema says about a path: found or not, and where it may be absent (null unions)."""

    found: bool
    optional: tuple[str, ...] = ()  # the prefixes (as written) that may be null or absent
    problem: str = ""  # when not found: what is wrong, with the fields that exist there
    available: tuple[str, ...] = ()
    near: str = ""  # the existing name closest to the typo, if any


def resolve(schema: Mapping[str, Any], path: Sequence[str | int]) -> Resolution:
    """Follow `path` through a fastavro-parsed schema (its `__named_schemas` resolve references)."""
    names: Mapping[str, Any] = schema.get("__named_schemas") or {}
    return _walk(schema, tuple(path), 0, names)


def _named(node: Any, names: Mapping[str, Any]) -> Any:
    if isinstance(node, str) and node in names:
        return names[node]
    if isinstance(node, dict) and node.get("type") in names:
        return names[node["type"]]
    return node


def _walk(node: Any, path: Path, depth: int, names: Mapping[str, Any]) -> Resolution:  # noqa: PLR0911
    node = _named(node, names)
    if isinstance(node, list):
        return _union(node, path, depth, names)
    if depth == len(path):
        return Resolution(found=True)
    part, here = path[depth], show(path[:depth]) or "the record"
    kind = node.get("type") if isinstance(node, dict) else node
    if kind == "record":
        fields = {f["name"]: f["type"] for f in node["fields"]}
        if isinstance(part, str) and part in fields:
            return _walk(fields[part], path, depth + 1, names)
        return _absent(part, here, tuple(fields))
    if kind == "map":
        if isinstance(part, int):
            return Resolution(False, problem=f"{here} is a map: use a key, not the index [{part}]")
        return _walk(node["values"], path, depth + 1, names)
    if kind == "array":
        if not isinstance(part, int):
            return Resolution(False, problem=f"{here} is a list: use an index such as {here}[0], not .{part}")
        inner = _walk(node["items"], path, depth + 1, names)
        # An index may be past the end of any given list: the value can always be absent.
        return _with_optional(inner, show(path[: depth + 1]))
    what = node.get("logicalType") or kind if isinstance(node, dict) else kind
    return Resolution(False, problem=f"{here} is a {what}, which has no field {show(path[depth:])}")


def _union(branches: list[Any], path: Path, depth: int, names: Mapping[str, Any]) -> Resolution:
    nullable = any(_named(b, names) == "null" for b in branches)
    results = [_walk(b, path, depth, names) for b in branches if _named(b, names) != "null"]
    found = [r for r in results if r.found]
    here = show(path[:depth])
    if found:
        optional = tuple(dict.fromkeys(o for r in found for o in r.optional))
        best = Resolution(True, optional=optional)
        return _with_optional(best, here) if nullable and here else best
    if not results:
        return Resolution(False, problem=f"{here} is always null")
    return results[0]


def _with_optional(result: Resolution, prefix: str) -> Resolution:
    if not result.found or prefix in result.optional:
        return result
    return Resolution(True, optional=(prefix, *result.optional))


def _absent(part: str | int, here: str, fields: tuple[str, ...]) -> Resolution:
    import difflib

    near = difflib.get_close_matches(str(part), fields, n=1, cutoff=0.6)
    problem = f"{here} has no field {part!r}" if isinstance(part, str) else f"{here} is a record, not a list"
    return Resolution(False, problem=problem, available=fields, near=near[0] if near else "")
