"""The published JSON Schema of mapping files (`schemas/mapping.schema.json`), for editors and CI.

Regenerate it with `.venv/bin/python -m consumer.mappings.schema > schemas/mapping.schema.json`; a test
keeps the committed file equal to the models.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from consumer.mappings.model import MappingFile

SCHEMA_ID = "https://github.com/kafka-twilio/kafka-twilio/blob/main/schemas/mapping.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a mapping file, for editors (yaml-language-server) and CI checks."""
    schema = MappingFile.model_json_schema(by_alias=True)
    schema.update(title="kafka-twilio message mappings", description=(
        "Which events send which Twilio message to whom. Validate with `kafka-twilio validate FILE`."
    ))  # fmt: skip
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render_json_schema() -> str:
    """The schema file's exact text."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_json_schema())
