"""Schema evolution: which changes keep old and new producers readable, checked with real bytes."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import fastavro
import pytest
from fastavro.read import SchemaResolutionError

from consumer.events.decode import Decoder
from consumer.events.model import Event
from consumer.events.schemas import SINGLE_OBJECT_MAGIC, LocalSchemas, from_avro, to_avro
from tests.unit._fixtures import SCHEMAS_DIR, all_fixtures, load

LOCAL = LocalSchemas.load(SCHEMAS_DIR)
V1, V2 = LOCAL.by_name["segment_event.v1"], LOCAL.reader
SCHEMA_FILES = sorted(SCHEMAS_DIR.glob("*.avsc"))


def _records(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            yield schema
        for value in schema.values():
            yield from _records(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _records(value)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_record_and_field_is_documented(path: Any) -> None:
    records = list(_records(json.loads(path.read_text())))
    assert records
    for record in records:
        assert record.get("doc"), record["name"]
        for field in record["fields"]:
            assert field.get("doc"), f"{record['name']}.{field['name']}"


def _v1_bytes(data: dict[str, Any]) -> bytes:
    record = {k: v for k, v in to_avro(data).items() if k not in ("external_ids", "extra")}
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + V1.fingerprint)
    fastavro.schemaless_writer(buf, V1.parsed, record)
    return buf.getvalue()


@pytest.mark.parametrize("name", all_fixtures())
def test_an_old_v1_writer_is_read_by_the_current_reader(name: str) -> None:
    data = load(name)
    event = Decoder(schemas_dir=SCHEMAS_DIR, encoding="single-object").decode(_v1_bytes(data))
    v1_fields = {f["name"] for f in V1.parsed["fields"]}  # v1 had no external_ids and no `extra`
    expected = Event.from_segment({k: v for k, v in data.items() if k in v1_fields})
    assert event == expected
    assert event.external_ids == ()


@pytest.mark.parametrize("name", all_fixtures())
def test_a_current_writer_is_read_by_an_old_v1_reader(name: str) -> None:
    data = load(name)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, V2.parsed, to_avro(data))
    buf.seek(0)
    old = fastavro.schemaless_reader(buf, V2.parsed, V1.parsed)
    assert isinstance(old, dict)
    assert from_avro(old)["properties" if "properties" in data else "type"] == data.get(
        "properties", data["type"]
    )


def _with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    schema = copy.deepcopy(json.loads((SCHEMAS_DIR / "segment_event.avsc").read_text()))
    change(schema)
    return schema


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def _add(field: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["fields"].append({"doc": "new", **field})


def _rename(old: str, new: str, alias: bool) -> Callable[[dict[str, Any]], None]:
    def change(s: dict[str, Any]) -> None:
        f = _field(s, old)
        f["name"] = new
        if alias:
            f["aliases"] = [old]

    return change


def _retype(name: str, avro_type: Any, default: Any = ...) -> Callable[[dict[str, Any]], None]:
    def change(s: dict[str, Any]) -> None:
        f = _field(s, name)
        f["type"] = avro_type
        if default is not ...:
            f["default"] = default
        else:
            f.pop("default", None)

    return change


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["fields"].remove(_field(s, name))


# (description, change to the *reader* schema, readable?) -- old writer = the current schema.
CHANGES = [
    (
        "add an optional field with a default",
        _add({"name": "tenant", "type": ["null", "string"], "default": None}),
        True,
    ),
    (
        "add a map field with an empty default",
        _add({"name": "labels", "type": {"type": "map", "values": "string"}, "default": {}}),
        True,
    ),
    ("remove a field", _drop("sentAt"), True),
    ("rename a field with an alias", _rename("sentAt", "sent_at", alias=True), True),
    ("widen version from long to double", _retype("version", ["null", "double"], None), True),
    ("add a branch to a union", _retype("userId", ["null", "string", "long"], None), True),
    ("add a field without a default", _add({"name": "tenant", "type": "string"}), False),
    ("rename a field without an alias, required", _rename("messageId", "message_id", alias=False), False),
    ("change a field's type", _retype("messageId", "long"), False),
    ("make an optional field required", _retype("userId", "string"), True),  # readable while no null is sent
    ("narrow version from long to int", _retype("version", ["null", "int"], None), False),
]


@pytest.mark.parametrize(("what", "change", "readable"), CHANGES, ids=[c[0] for c in CHANGES])
def test_schema_changes_are_compatible_exactly_as_documented(
    what: str, change: Callable[[dict[str, Any]], None], readable: bool
) -> None:
    reader = fastavro.parse_schema(_with(change))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, V2.parsed, to_avro(load("audience_entered_track")))
    buf.seek(0)
    if readable:
        assert isinstance(fastavro.schemaless_reader(buf, V2.parsed, reader), dict)
    else:
        with pytest.raises(SchemaResolutionError):
            fastavro.schemaless_reader(buf, V2.parsed, reader)


def test_every_documented_change_is_in_the_readme() -> None:
    readme = (SCHEMAS_DIR / "README.md").read_text()
    for what, _, _ in CHANGES:
        assert what in readme, what
