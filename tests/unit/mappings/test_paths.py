"""Every path a source or a mapping reads, checked against the writer schemas: all problems at once,
each naming the file and line, the mapping or source, the path and the fields that exist."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from consumer.commands.preview import validate_main
from consumer.events.schemas import parse_schema
from consumer.events.source_schemas import Known
from consumer.mappings.load import load_files
from consumer.mappings.paths import check, mapping_paths

ROOT = Path(__file__).resolve().parents[3]
SHOP = ROOT / "examples" / "schemas"


def write(tmp_path: Path, body: str) -> Path:
    for name in ("com.shop.OrderPlaced.v1.avsc", "com.shop.OrderPlaced.v2.avsc"):
        (tmp_path / name).write_text((SHOP / name).read_text())
    path = tmp_path / "shop.yaml"
    path.write_text(textwrap.dedent(body))
    return path


SOURCE = """
version: 1
sources:
  - topic: shop.orders
    schema: com.shop.OrderPlaced.v2.avsc
    event: Order Placed
    userId: {user}
    traits: {{phone: customer.phone}}
mappings:
  - id: shop-order
    trigger:
      event: Order Placed
      conditions: {{path: {condition}, exists: true}}
    channel: sms
    recipient: {{sources: [{recipient}]}}
    sender: {{phone_number: "+18885550100"}}
    content: {{body: "{body}"}}
    policies: {{consent: allow_unknown}}
  - id: segment-only
    trigger: {{event: Order Completed}}
    channel: sms
    sender: {{phone_number: "+18885550100"}}
    content: {{body: "{{{{ properties.not_in_the_shop_schema }}}}"}}
"""


def shop(tmp_path: Path, **paths: str) -> Path:
    fields = {"user": "customer.id", "condition": "properties.order_id", "recipient": "traits.phone",
              "body": "Order {{ properties.order_id }} {{ properties.coupon_code }}", **paths}  # fmt: skip
    return write(tmp_path, SOURCE.format(**fields))


def test_validate_reports_every_bad_path_at_once_with_file_line_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shop(
        tmp_path, user="customer.ident", condition="properties.ordr_id", recipient="traits.mobile",
        body="{{ properties.customer.phnoe }} {{ properties.lines[0].sku }}",
    )  # fmt: skip
    assert validate_main([str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    schema = str(tmp_path / "com.shop.OrderPlaced.v2.avsc")
    assert err == [
        f"{path}:4: source 'shop.orders': userId: path 'customer.ident' is not in {schema}: customer has no "
        "field 'ident'. Fix: Use one of the fields there: id, phone, locale.",
        f"{path}:10: mapping 'shop-order' (through source 'shop.orders'): trigger.conditions.path: path "
        f"'properties.ordr_id' is not in {schema}: the record has no field 'ordr_id'. Fix: Did you mean "
        "'order_id'? Use one of the fields there: order_id, customer, total, currency, placed_at, "
        "coupon_code.",
        f"{path}:10: mapping 'shop-order' (through source 'shop.orders'): recipient.sources: traits.mobile: "
        "source 'shop.orders' maps no traits.mobile. Fix: use one of phone, or map it in the source",
        f"{path}:10: mapping 'shop-order' (through source 'shop.orders'): content.body: path "
        f"'properties.customer.phnoe' is not in {schema}: customer has no field 'phnoe'. Fix: Did you mean "
        "'phone'? Use one of the fields there: id, phone, locale.",
        f"{path}:10: mapping 'shop-order' (through source 'shop.orders'): content.body: path "
        f"'properties.lines[0].sku' is not in {schema}: the record has no field 'lines'. Fix: Use one of the "
        "fields there: order_id, customer, total, currency, placed_at, coupon_code.",
        "5 problem(s) found.",
    ]


def test_validate_accepts_good_paths_and_notes_the_optional_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate_main([str(shop(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "path 'properties.coupon_code' is optional: coupon_code may be null or absent" in out
    assert out.endswith("OK: 2 mapping(s) (2 enabled) and 1 source(s) in 1 file(s); every path checked "
                        "where the writer schema is known.\n")  # fmt: skip


def test_a_path_only_a_newer_version_has_is_optional_and_one_no_version_has_is_a_problem(
    tmp_path: Path,
) -> None:
    loaded = load_files(shop(tmp_path, body="{{ properties.coupon_code }} {{ properties.coupon }}"))
    versions = tuple(
        (f"version {n}", parse_schema((SHOP / f"com.shop.OrderPlaced.v{n}.avsc").read_text(), source=f"v{n}"))
        for n in (1, 2)
    )
    found = check(loaded.mappings, loaded.sources, {"shop.orders": Known("subject 'shop-value'", versions)},
                  loaded.where)  # fmt: skip
    assert any("'properties.coupon_code' is optional: absent in subject 'shop-value' version 1" in n
               for n in found.notes)  # fmt: skip
    assert len(found.problems) == 1
    assert "path 'properties.coupon' is not in subject 'shop-value'" in found.problems[0]
    assert "Did you mean 'coupon_code'?" in found.problems[0]


def test_a_recipient_needs_one_of_its_sources_to_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shop(tmp_path, recipient="properties.customer.mobile, traits.phone")
    assert validate_main([str(path)]) == 0, capsys.readouterr().err


def test_a_source_without_a_known_schema_is_noted_as_checked_per_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shop(tmp_path, user="anything.at.all")
    path.write_text(path.read_text().replace("    schema: com.shop.OrderPlaced.v2.avsc\n", ""))
    assert validate_main([str(path)]) == 0
    assert (
        "no writer schema known at start-up; its paths are checked on each record" in capsys.readouterr().out
    )


def test_bad_sources_are_reported_with_the_mapping_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shop(tmp_path, user="customer..id")
    text = path.read_text().replace("event: Order Placed\n    userId", "evnt: Order Placed\n    userId", 1)
    path.write_text(
        text.replace("schema: com.shop.OrderPlaced.v2.avsc", f"schema: {json.dumps('missing.avsc')}")
    )
    assert validate_main([str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:7: source 'shop.orders': userId: Value error, 'customer..id' is not a path" in err
    assert f"{path}:6: source 'shop.orders': evnt: Extra inputs are not permitted" in err


def test_a_missing_schema_file_is_a_problem_naming_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shop(tmp_path)
    path.write_text(path.read_text().replace("com.shop.OrderPlaced.v2.avsc", "missing.avsc"))
    assert validate_main([str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:4: source 'shop.orders': schema: cannot use {tmp_path / 'missing.avsc'}" in err
    assert "Fix: point `schema` at the producer's .avsc file" in err


def test_mapping_paths_lists_conditions_recipients_and_template_variables(tmp_path: Path) -> None:
    mapping = load_files(shop(tmp_path)).mappings[0]
    assert [(f, p) for f, p in mapping_paths(mapping) if p[0][0] in ("properties", "traits")] == [
        ("trigger.conditions.path", (("properties", "order_id"),)),
        ("recipient.sources", (("traits", "phone"),)),
        ("content.body", (("properties", "order_id"),)),
        ("content.body", (("properties", "coupon_code"),)),
    ]


class _Down:
    """A registry client whose server refuses connections."""

    def get_versions(self, subject: str) -> list[int]:
        raise ConnectionRefusedError("connection refused")


def test_a_subject_the_registry_cannot_be_asked_for_is_checked_per_record_and_an_empty_one_is_a_problem(
    tmp_path: Path,
) -> None:
    from consumer.events.registry import RegistrySchemas, make_registry_client
    from consumer.events.sources import Sources
    from consumer.mappings.paths import check_loaded

    path = shop(tmp_path)
    path.write_text(path.read_text().replace("schema: com.shop.OrderPlaced.v2.avsc", "subject: shop-value"))
    loaded = load_files(path)
    down = check_loaded(loaded, Sources(loaded.sources), None, RegistrySchemas(_Down()))
    assert down.problems == []
    assert any("subject 'shop-value' not fetched" in n and "checked on each record" in n for n in down.notes)
    empty = RegistrySchemas(make_registry_client("mock://paths-empty"))
    found = check_loaded(loaded, Sources(loaded.sources), None, empty)
    assert found.problems == [
        f"{path}:4: source 'shop.orders': subject: 'shop-value' has no versions in the Schema Registry at "
        "mock://paths-empty. Fix: register the producer's schema, or name its subject"
    ]
