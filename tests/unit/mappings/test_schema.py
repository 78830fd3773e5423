"""The published JSON Schema for mapping files is current and accepts the examples."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from consumer.mappings.load import load_mappings
from consumer.mappings.schema import render_json_schema

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "schemas" / "mapping.schema.json"
EXAMPLES = sorted([ROOT / "examples" / "mappings.yaml", *(ROOT / "examples" / "mappings").glob("*.yaml")])


def test_the_committed_schema_matches_the_model() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == render_json_schema(), (
        "schemas/mapping.schema.json is stale: regenerate it with "
        "`.venv/bin/python -m consumer.mappings.schema > schemas/mapping.schema.json`"
    )


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_file_validates_against_the_schema_and_loads(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
    assert errors == []
    assert load_mappings(path)


def test_the_schema_rejects_what_the_loader_rejects_structurally() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    document = {
        "mappings": [
            {
                "id": "x",
                "trigger": {"event": "X"},
                "channel": "fax",
                "sender": {"short_code": "1"},
                "content": {"body": "hi"},
                "colour": "red",
            }
        ]
    }
    messages = " | ".join(e.message for e in validator.iter_errors(document))
    assert "'fax' is not one of" in messages
    assert "'colour' was unexpected" in messages


def test_the_content_types_a_mapping_may_declare_are_the_ones_twilio_delivers() -> None:
    from typing import get_args

    from consumer.mappings.model import ContentType
    from consumer.twilio.content import TYPE_CHANNELS

    assert set(get_args(ContentType)) == set(TYPE_CHANNELS)
