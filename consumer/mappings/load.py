"""Load mapping files and report every problem at once.

Each problem names where it is and how to fix it, in one line an editor can jump to:

    mappings.yaml:14: mapping 'order-sms': sender.phone_number: String should match pattern …. Fix: …

Line numbers come from the YAML node tree (`yaml.compose`), looked up by the field's path; a
problem found in an in-memory document (tests, `parse_mappings`) names only its source.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from consumer.errors import MappingError
from consumer.events.recipients import Channel
from consumer.events.sources import Source
from consumer.mappings.model import Content, Mapping, Options, RecipientSpec, Sender
from consumer.mappings.rules import cross_check

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

Path_ = tuple[str | int, ...]


class Lines:
    """The line of each key and list item of a YAML document, by its path from the root."""

    def __init__(self, text: str | None = None) -> None:
        self._lines: dict[Path_, int] = {}
        if text is not None:
            import yaml

            node = yaml.compose(text, Loader=yaml.SafeLoader)
            if node is not None:
                self._walk(node, ())

    def _walk(self, node: Any, path: Path_) -> None:
        import yaml

        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                self._lines.setdefault(child, key.start_mark.line + 1)
                self._walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._lines.setdefault((*path, index), item.start_mark.line + 1)
                self._walk(item, (*path, index))

    def at(self, path: Path_) -> int | None:
        """The line of `path`, or of its longest prefix that the document has."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None


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


class _Report:
    """Problems of one document, each placed at its line when the document came from a file."""

    def __init__(self, source: str, lines: Lines) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[str] = []

    def where(self, path: Path_) -> str:
        line = self.lines.at(path)
        return f"{self.source}:{line}" if line is not None else self.source

    def add(self, index: int, mapping_id: str, field: str, message: str, fix: str) -> None:
        path: Path_ = ("mappings", index, *(int(p) if p.isdigit() else p for p in field.split(".") if p))
        self.problems.append(
            f"{self.where(path)}: mapping {mapping_id!r}: {field or '(mapping)'}: {message}. Fix: {fix}."
        )

    def add_source(self, index: int, label: str, field: str, message: str, fix: str) -> None:
        path: Path_ = ("sources", index, *(p for p in field.split(".") if p))
        self.problems.append(
            f"{self.where(path)}: source {label!r}: {field or '(source)'}: {message}. Fix: {fix}."
        )

    def top(self, key: str | None, message: str) -> None:
        self.problems.append(f"{self.where((key,) if key else ())}: {message}")


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


def _check_one(raw: Any, index: int, mapping_id: str, report: _Report) -> Mapping | None:
    if not isinstance(raw, dict):
        report.add(index, mapping_id, "", "a mapping must be an object", "write `- id: …` keys")
        return None
    before = len(report.problems)
    mapping: Mapping | None = None
    try:
        mapping = Mapping.model_validate(raw)
        findings = cross_check(
            mapping.channel, mapping.sender, mapping.content, mapping.options, mapping.recipient
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"] if not str(p).startswith("="))
            report.add(index, mapping_id, field, error["msg"].rstrip("."), _fix(error, field))
        findings = cross_check(
            _try(lambda: Channel(str(raw.get("channel")))),
            _try(lambda: _sender_shape(raw.get("sender"))),
            _try(lambda: TypeAdapter(Content).validate_python(raw.get("content"))),
            _try(lambda: _options_shape(raw.get("options") or {})),
            _try(lambda: RecipientSpec.model_validate(raw.get("recipient") or {})),
        )
    for finding in findings:
        report.add(index, mapping_id, *finding)
    return mapping if len(report.problems) == before else None


def _raw_id(raw: object, index: int) -> tuple[str, bool]:
    """The id a mapping calls itself (and whether it gave one), even when the mapping is invalid."""
    if isinstance(raw, dict) and raw.get("id") is not None:
        return str(raw["id"]), True
    return f"#{index + 1}", False


@dataclass
class Loaded:
    """What mapping files declare: the valid mappings and sources, and where each is (file:line)."""

    mappings: tuple[Mapping, ...] = ()
    sources: tuple[Source, ...] = ()
    where: dict[str, str] = field(default_factory=dict)  # "mapping <id>" / "source <label>" -> file:line


def _sources(data: dict[str, Any], report: _Report, base: Path | None, loaded: Loaded) -> None:
    raw = data.get("sources") or []
    if not isinstance(raw, list):
        report.top("sources", "`sources` must be a list. Fix: write `sources: [- topic: …]`.")
        return
    found: list[Source] = list(loaded.sources)
    for index, item in enumerate(raw):
        label = str(item.get("name") or item.get("topic")) if isinstance(item, dict) else f"#{index + 1}"
        try:
            source = Source.model_validate(item)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"] if not str(p).startswith(("=", "function-")))
                report.add_source(index, label, where, error["msg"].rstrip("."), _fix(error, where))
            continue
        if source.schema_file and base is not None and not Path(source.schema_file).is_absolute():
            resolved = os.path.normpath(base / source.schema_file)
            source = source.model_copy(update={"schema_file": resolved})
        if any(s.label == source.label for s in found):
            report.add_source(index, source.label, "name", "two sources have this label",
                          "give one a `name` of its own")  # fmt: skip
        found.append(source)
        loaded.where[f"source {source.label}"] = report.where(("sources", index))
    loaded.sources = tuple(found)


def _parse(data: object, report: _Report) -> tuple[list[Mapping], list[tuple[str, str]]]:
    """Validate a document; return its valid mappings and every (id, where) it declares."""
    if isinstance(data, list):
        data = {"mappings": data}
    if not isinstance(data, dict) or not isinstance(data.get("mappings", []), list):
        report.top(
            None, "the file must hold `mappings: [...]`. Fix: put the mappings under a `mappings:` list"
        )
        return [], []
    for key in data:
        if key not in ("version", "mappings", "sources"):
            report.top(
                str(key),
                f"top-level key {key!r} is not allowed. Fix: keep only `version`, `mappings` and `sources`.",
            )
    if data.get("version", 1) != 1:
        report.top("version", f"version {data.get('version')!r} is not supported. Fix: set `version: 1`.")
    mappings: list[Mapping] = []
    ids: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, raw in enumerate(data.get("mappings") or []):
        mapping_id, named = _raw_id(raw, index)
        # Checked on the raw id: a second mapping with a used id is reported even when it is invalid.
        if named and mapping_id in seen:
            report.add(index, mapping_id, "id", "the id is used twice", "give every mapping its own id")
        if named:
            seen.add(mapping_id)
            ids.append((mapping_id, report.where(("mappings", index, "id"))))
        mapping = _check_one(raw, index, mapping_id, report)
        if mapping is not None:
            mappings.append(mapping)
    return mappings, ids


def parse_mappings(
    data: object, source: str = "<memory>", lines: Lines | None = None
) -> tuple[tuple[Mapping, ...], list[str]]:
    """Validate a parsed mapping document; return the valid mappings and every problem found."""
    report = _Report(source, lines or Lines())
    mappings, _ = _parse(data, report)
    return tuple(mappings), report.problems


def _read(path: Path, problems: list[str]) -> tuple[object, Lines] | None:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        lines = Lines(text)
    except OSError as exc:
        problems.append(f"{path}: cannot read the file ({exc.strerror}). Fix: check the path.")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problems.append(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}. Fix: correct the YAML.")
        return None
    return (data if data is not None else {"mappings": []}), lines


def load_mappings(*paths: Path) -> tuple[Mapping, ...]:
    """Load and validate mapping files; raise `MappingError` listing every problem in all of them."""
    return load_files(*paths).mappings


def load_files(*paths: Path) -> Loaded:
    """Load and validate mapping files with their sources; `MappingError` listing every problem."""
    problems: list[str] = []
    mappings: list[Mapping] = []
    declared: dict[str, list[tuple[Path, str]]] = {}
    loaded = Loaded()
    for path in paths:
        read = _read(path, problems)
        if read is None:
            continue
        report = _Report(str(path), read[1])
        found, ids = _parse(read[0], report)
        if isinstance(read[0], dict):
            _sources(read[0], report, path.parent, loaded)
        problems += report.problems
        mappings += found
        for mapping_id, where in ids:
            declared.setdefault(mapping_id, []).append((path, where))
            loaded.where.setdefault(f"mapping {mapping_id}", where)
    problems += [
        f"mapping id {mid!r} is defined in {' and '.join(w for _, w in places)}. Fix: give every mapping "
        "its own id."
        for mid, places in declared.items()
        if len({p for p, _ in places}) > 1
    ]
    if problems:
        raise MappingError(
            f"{len(problems)} problem(s) in {', '.join(map(str, paths))}", problems=tuple(problems)
        )
    loaded.mappings = tuple(mappings)
    return loaded
