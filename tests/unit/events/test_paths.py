"""Paths into records (Liquid's variable syntax) and what an Avro schema says about them."""

from __future__ import annotations

from typing import Any

import fastavro
import pytest

from consumer.events.paths import MISSING, parse_path, read, resolve, show

SCHEMA: dict[str, Any] = fastavro.parse_schema(
    {
        "type": "record", "name": "OrderPlaced", "namespace": "com.shop",
        "fields": [
            {"name": "order_id", "type": "string"},
            {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
                {"name": "id", "type": "string"}, {"name": "phone", "type": "string"},
                {"name": "locale", "type": ["null", "string"], "default": None}]}},
            {"name": "billing", "type": ["null", "Customer"], "default": None},
            {"name": "lines", "type": {"type": "array", "items": {
                "type": "record", "name": "Line", "fields": [{"name": "sku", "type": "string"}]}}},
            {"name": "attributes", "type": {"type": "map", "values": "string"}},
            {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("order_id", ("order_id",)),
        ("customer.phone", ("customer", "phone")),
        ("lines[0].sku", ("lines", 0, "sku")),
        ('attributes["gift wrap"]', ("attributes", "gift wrap")),
        ("a.b-c", ("a", "b-c")),
    ],
)
def test_paths_are_read_with_liquids_own_variable_syntax(text: str, path: tuple[str | int, ...]) -> None:
    assert parse_path(text) == path


@pytest.mark.parametrize("text", ["", "  ", "a b", "a | upcase", "{{ a }}", "a.[", "a or b"])
def test_anything_but_one_path_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="path"):
        parse_path(text)


def test_show_writes_a_path_as_it_would_be_typed() -> None:
    assert show(("lines", 0, "sku")) == "lines[0].sku"
    assert show(("attributes", "gift wrap")) == "attributes['gift wrap']"


def test_read_follows_keys_and_indexes_and_says_missing_otherwise() -> None:
    record = {"customer": {"phone": "+1"}, "lines": [{"sku": "A"}]}
    assert read(record, ("customer", "phone")) == "+1"
    assert read(record, ("lines", -1, "sku")) == "A"
    assert read(record, ("lines", 3, "sku")) is MISSING
    assert read(record, ("customer", "phone", "x")) is MISSING
    assert read(record, ("customer", 0)) is MISSING


@pytest.mark.parametrize(
    ("path", "optional"),
    [
        (("order_id",), ()),
        (("customer", "phone"), ()),
        (("customer", "locale"), ("customer.locale",)),
        (("billing", "phone"), ("billing",)),  # through a union with null, and a named type
        (("lines", 0, "sku"), ("lines[0]",)),  # an index may be past the end
        (("attributes", "anything"), ()),
        (("customer",), ()),
    ],
)
def test_paths_the_schema_has_resolve_with_where_they_may_be_absent(
    path: tuple[str | int, ...], optional: tuple[str, ...]
) -> None:
    result = resolve(SCHEMA, path)
    assert (result.found, result.optional) == (True, optional)


@pytest.mark.parametrize(
    ("path", "problem", "available", "near"),
    [
        (("customer", "phnoe"), "customer has no field 'phnoe'", ("id", "phone", "locale"), "phone"),
        (("custmer",), "the record has no field 'custmer'", None, "customer"),
        (("lines", "sku"), "lines is a list: use an index such as lines[0], not .sku", (), ""),
        (("placed_at", "day"), "placed_at is a timestamp-millis, which has no field day", (), ""),
        (("billing", "x"), "billing has no field 'x'", ("id", "phone", "locale"), ""),
    ],
)
def test_paths_the_schema_lacks_say_what_exists_there(
    path: tuple[str | int, ...], problem: str, available: tuple[str, ...] | None, near: str
) -> None:
    result = resolve(SCHEMA, path)
    assert not result.found
    assert result.problem == problem
    if available is not None:
        assert result.available == available
    assert result.near == near
