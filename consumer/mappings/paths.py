"""Every path a source or a mapping reads, checked against the writer schemas before the first record.

For each source whose writer schemas are known (its local `schema:` file, an `.avsc` of its record
name in the schemas directory, or every version of its registry `subject`, fetched at start-up), each
path the source reads is resolved in every version; each mapping fired by the source's constant
`event` has its condition, recipient and template paths translated through the source
(`properties.customer.phone` -> `customer.phone` when properties are the whole record) and resolved
the same way. A path found in no version is a problem naming the file and line, the mapping or
source, the path and the fields that exist there; one found only in some versions, or through a union
with null, is accepted and noted as optional. Where no schema is known the check happens per record
(`consumer.events.sources`). Pure: the schemas are given.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from consumer.errors import MappingError
from consumer.events.paths import Path, parse_path, resolve, show
from consumer.events.registry import RegistrySchemas
from consumer.events.schemas import LocalSchemas
from consumer.events.source_schemas import Known, find_schemas
from consumer.events.sources import Source, Sources
from consumer.mappings.conditions import Comparison
from consumer.mappings.model import Mapping, RecipientSpec
from consumer.mappings.templating import LENIENT_ENV, Template

_PARTS = ("properties", "traits", "context")


@dataclass
class Findings:
    """Problems (refuse to start, `validate` fails) and notes (optional paths, unchecked sources)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check(
    mappings: Sequence[Mapping], sources: Sequence[Source], known: dict[str, Known], where: dict[str, str]
) -> Findings:
    """Resolve every path of `sources` (and the mappings they fire) in the schemas `known` by label."""
    out = Findings()
    for source in sources:
        schemas = known.get(source.label)
        place = where.get(f"source {source.label}", "mapping file")
        if schemas is None:
            out.notes.append(
                f"{place}: source {source.label!r}: no writer schema known at start-up; its "
                "paths are checked on each record (missing ones skipped as missing_field)"
            )
            continue
        for name, text in source.paths():
            _report(out, place, f"source {source.label!r}: {name}", [_one(text, parse_path(text), schemas)])
        for mapping in _fired_by(mappings, source):
            mplace = where.get(f"mapping {mapping.id}", place)
            who = f"mapping {mapping.id!r} (through source {source.label!r})"
            for name, choices in mapping_paths(mapping):
                results: list[_Result] = []
                for path in choices:
                    translated = _through(source, path)
                    if isinstance(translated, str):
                        results.append(([f"{show(path)}: {translated}"], []))
                    elif translated is not None:
                        results.append(_one(show(path), translated, schemas))
                _report(out, mplace, f"{who}: {name}", results)
    return out


_Result = tuple[list[str], list[str]]  # (problems, notes) of one path


def _report(out: Findings, place: str, who: str, results: list[_Result]) -> None:
    """One field's paths: fine when any alternative resolves (a recipient's sources are tried in turn)."""
    if not results:
        return
    good = [r for r in results if not r[0]]
    if good:
        out.notes += [f"{place}: {who}: {note}" for _, notes in good for note in notes]
        return
    out.problems += [f"{place}: {who}: {problem}" for problems, _ in results for problem in problems]


def _fired_by(mappings: Sequence[Mapping], source: Source) -> Iterator[Mapping]:
    if not isinstance(source.event, str):
        return  # a name read from each record: which mappings it fires is known only then
    for mapping in mappings:
        trigger = mapping.trigger
        if trigger.event is not None and source.event in trigger.event and source.type == "track":
            yield mapping


def _one(text: str, path: Path, schemas: Known) -> _Result:
    results = [(label, resolve(schema.parsed, path)) for label, schema in schemas.versions]
    found = [(label, r) for label, r in results if r.found]
    if not found:
        bad = results[-1][1]
        near = f"Did you mean {bad.near!r}? " if bad.near else ""
        fields = (
            f"Use one of the fields there: {', '.join(bad.available)}"
            if bad.available
            else "Correct the path"
        )
        fix = f"{near}{fields}"
        return [f"path {text!r} is not in {schemas.origin}: {bad.problem}. Fix: {fix}."], []
    notes = []
    if len(found) < len(results):
        missing = ", ".join(label for label, r in results if not r.found)
        notes.append(f"path {text!r} is optional: absent in {schemas.origin} {missing}")
    optional = sorted({o for _, r in found for o in r.optional})
    if optional:
        notes.append(f"path {text!r} is optional: {', '.join(optional)} may be null or absent")
    return [], notes


def _through(source: Source, path: Path) -> Path | str | None:
    """The record path a mapping's event path reads through `source`; None when it reads no record
    field (the envelope, derived views); a message when the source does not provide it."""
    if not path or path[0] not in _PARTS:
        return None
    part, rest = str(path[0]), path[1:]
    spec = getattr(source, part)
    if spec is None:
        return (
            rest if part == "properties" else f"source {source.label!r} sets no {part}; map it in the source"
        )
    if isinstance(spec, str):
        return (*parse_path(spec), *rest)
    if not rest:
        return None
    name = rest[0]
    if not isinstance(name, str) or name not in spec:
        names = ", ".join(sorted(spec))
        return (
            f"source {source.label!r} maps no {part}.{name}. Fix: use one of {names}, or map it in the source"
        )
    return (*parse_path(spec[name]), *rest[1:])


def mapping_paths(mapping: Mapping) -> list[tuple[str, tuple[Path, ...]]]:
    """Every (field, paths) a mapping reads: condition and recipient paths, template variables. A
    field with several paths (a recipient's sources) needs one of them."""
    out: list[tuple[str, tuple[Path, ...]]] = []
    _walk(mapping, "", out)
    return out


def _dotted(text: str) -> Path:
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in text.split("."))


def _walk(value: Any, where: str, out: list[tuple[str, tuple[Path, ...]]]) -> None:
    if isinstance(value, Template):
        if value.literal is None:
            variables = LENIENT_ENV.from_string(value.source).analyze().variables
            out += [
                (where, (tuple(s for s in v.segments if isinstance(s, str | int)),))
                for vs in variables.values()
                for v in vs
                if all(isinstance(s, str | int) for s in v.segments)
            ]
    elif isinstance(value, Comparison):
        out.append((f"{where}.path", (_dotted(value.path),)))
    elif isinstance(value, RecipientSpec):
        texts = [t for t in (value.path, *(value.sources or ())) if t and t.split(".", 1)[0] in _PARTS]
        if texts:
            out.append((f"{where}.sources" if value.sources else f"{where}.path", tuple(map(_dotted, texts))))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _walk(getattr(value, name), f"{where}.{name}".lstrip("."), out)
    elif isinstance(value, tuple | list):
        for index, item in enumerate(value):
            _walk(item, f"{where}.{index}", out)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{where}.{key}", out)


def check_loaded(
    loaded: Any, sources: Sources, local: LocalSchemas | None, registry: RegistrySchemas | None
) -> Findings:
    """Find each source's writer schemas (the registry asked, blocking) and check every path in them.
    `loaded` is a `consumer.mappings.load.Loaded`; `sources` is told the record names of its subjects."""
    found = find_schemas(sources, local, registry, loaded.where)
    out = check(loaded.mappings, loaded.sources, found.known, loaded.where)
    notes = list(dict.fromkeys(found.notes + out.notes))  # a template may read one path twice
    return Findings(problems=list(dict.fromkeys(found.problems + out.problems)), notes=notes)


class SourceDecoder(Protocol):
    @property
    def schemas(self) -> tuple[LocalSchemas, RegistrySchemas | None]: ...
    def use_sources(self, sources: Sources) -> None: ...


def start_sources(loaded: Any, decoder: SourceDecoder) -> list[str]:
    """Check the sources of `loaded` and their mappings' paths; hand the sources to `decoder`. Raise
    MappingError listing every bad path (the service refuses to start); return the notes."""
    sources = Sources(loaded.sources)
    local, registry = decoder.schemas
    findings = check_loaded(loaded, sources, local, registry)
    if findings.problems:
        raise MappingError(
            f"{len(findings.problems)} path(s) in the mapping file do not exist in the writer schemas",
            problems=tuple(findings.problems),
        )
    decoder.use_sources(sources)
    return findings.notes


__all__ = ["Findings", "check", "check_loaded", "mapping_paths", "start_sources"]
