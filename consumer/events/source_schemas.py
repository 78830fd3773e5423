"""The writer schemas each source's records may have, found before the first record is read.

In order: the source's own `schema:` file; an `.avsc` of its `record` name in the schemas directory;
every version of its registry `subject` (fetched once at start-up, which also tells the decoder which
record names the subject's source reads). A source with none of these is checked per record. A
subject the registry does not have is a problem (a typo in the file); a registry that cannot be
asked at start-up is a note, and those records are checked per record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from consumer.errors import DecodeError, RegistryError
from consumer.events.registry import RegistrySchemas
from consumer.events.schemas import AvroSchema, LocalSchemas, parse_schema
from consumer.events.sources import Sources


@dataclass(frozen=True)
class Known:
    """The writer schemas a source's records may have, oldest first, and where they came from."""

    origin: str  # "examples/schemas/order_placed.avsc", "subject 'shop.orders-value' (URL)"
    versions: tuple[tuple[str, AvroSchema], ...]  # (version label, schema)


@dataclass
class Found:
    known: dict[str, Known] = field(default_factory=dict)  # by source label
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def find_schemas(
    sources: Sources, local: LocalSchemas | None, registry: RegistrySchemas | None, where: dict[str, str]
) -> Found:
    """Every source's writer schemas; problems name the file and line of the source."""
    out = Found()
    for source in sources.all:
        place = f"{where.get(f'source {source.label}', 'mapping file')}: source {source.label!r}"
        if source.schema_file:
            try:
                text = Path(source.schema_file).read_text(encoding="utf-8")
                schema = parse_schema(text, source=source.schema_file)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                out.problems.append(
                    f"{place}: schema: cannot use {source.schema_file} ({exc}). Fix: point "
                    "`schema` at the producer's .avsc file (relative to the mapping file)"
                )
                continue
            if source.record and schema.name != source.record:
                out.problems.append(
                    f"{place}: schema: {source.schema_file} defines {schema.name}, not "
                    f"{source.record}. Fix: correct `record` or `schema`"
                )
                continue
            out.known[source.label] = Known(source.schema_file, (("", schema),))
        elif source.record and local is not None and source.record in local.by_name:
            schema = local.by_name[source.record]
            out.known[source.label] = Known(schema.source, (("", schema),))
        elif source.subject:
            _subject(out, sources, source.label, source.subject, registry, place)
        if source.label in out.known:
            sources.learn_reader(source.label, out.known[source.label].versions[-1][1])
    return out


def _subject(  # noqa: PLR0917  private helper of find_schemas, called once
    out: Found, sources: Sources, label: str, subject: str, registry: RegistrySchemas | None, place: str
) -> None:
    if registry is None:
        out.notes.append(
            f"{place}: subject {subject!r} not fetched (no Schema Registry configured); "
            "its paths are checked on each record"
        )
        return
    try:
        versions = registry.versions(subject)
    except DecodeError as exc:
        out.problems.append(
            f"{place}: subject: {exc.message}. Fix: name a subject the producers register "
            "under (TopicNameStrategy: <topic>-value)"
        )
        return
    except RegistryError as exc:
        out.notes.append(
            f"{place}: subject {subject!r} not fetched ({exc.message}); its paths are checked on each record"
        )
        return
    if not versions:
        out.problems.append(
            f"{place}: subject: {subject!r} has no versions in the Schema Registry at "
            f"{registry.url}. Fix: register the producer's schema, or name its subject"
        )
        return
    schemas: list[tuple[str, AvroSchema]] = []
    for number, text in versions:
        try:
            schemas.append((f"version {number}", parse_schema(text, source=f"subject {subject} v{number}")))
        except ValueError as exc:
            out.problems.append(f"{place}: subject: version {number}: {exc}")
    if schemas:
        out.known[label] = Known(f"subject {subject!r} ({registry.url})", tuple(schemas))
        sources.learn_subject(subject, frozenset(s.name for _, s in schemas))
