"""Request validation against the official Twilio OpenAPI spec, cheap enough for every request.

Two modes, both driven by the spec file (never a copy of it):
- "schema" (default): the Messages create request-body schema and the AccountSid path pattern are
  taken from the spec once and compiled into an OpenAPI 3.0 schema validator (the one openapi-core
  uses inside); each form is cast by the declared property types and validated. ~20x cheaper than
  a full openapi-core request validation, which matters at thousands of requests per second.
- "openapi": full openapi-core request validation (path, security, body) for each request.
Both then apply Twilio's conditional rules (consumer.simulator.rules).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
API_SPEC = "twilio_api_v2010.json"
#: Keys Twilio accepts that the spec does not declare (reference/twilio-api.md).
UNDECLARED_BUT_ACCEPTED = frozenset({"Tags"})


def find_spec_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder with the spec JSON files: explicit path, $TWILIO_OAI_DIR, or ../shared/twilio-oai."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get("TWILIO_OAI_DIR"):
        candidates.append(Path(os.environ["TWILIO_OAI_DIR"]))
    project_root = Path(__file__).resolve().parents[2]
    candidates += [project_root.parent / "shared" / "twilio-oai", Path.cwd().parent / "shared" / "twilio-oai"]
    for base in candidates:
        for folder in (base / "json", base):
            if (folder / API_SPEC).is_file():
                return folder
        if explicit and base == Path(explicit):
            return None  # an explicit path that does not hold the spec is not silently replaced
    return None


@cache
def load_spec(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        spec: dict[str, Any] = json.load(f)
    return spec


def _resolve(node: Any, spec: dict[str, Any]) -> Any:
    """Inline local `$ref`s (the request-body schema refers to a few enum components)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = spec
            for part in ref[2:].split("/"):
                target = target[part]
            return _resolve(target, spec)
        return {k: _resolve(v, spec) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, spec) for v in node]
    return node


def _caster(prop: dict[str, Any]) -> Callable[[str], Any]:
    kind = prop.get("type")
    if kind == "integer":
        return int
    if kind == "number":
        return float
    if kind == "boolean":

        def boolean(text: str) -> bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"

        return boolean
    return str


class MessageFormValidator:
    """The Messages create form schema from the spec, compiled once."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from openapi_schema_validator import OAS30Validator, oas30_format_checker

        operation = spec["paths"][MESSAGES_PATH]["post"]
        body = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
        schema = _resolve(body, spec)
        self.properties: dict[str, dict[str, Any]] = schema["properties"]
        self.arrays = frozenset(k for k, v in self.properties.items() if v.get("type") == "array")
        self._casters = {
            k: _caster(v["items"] if k in self.arrays else v) for k, v in self.properties.items()
        }
        self._validator = OAS30Validator(schema, format_checker=oas30_format_checker)
        (account,) = [p for p in operation["parameters"] if p["name"] == "AccountSid"]
        self.account_pattern = re.compile(account["schema"]["pattern"])

    def problems(self, params: Sequence[tuple[str, str]], account_sid: str) -> list[str]:
        """Every way `params` (and the AccountSid in the path) break the spec's schema."""
        problems: list[str] = []
        if not self.account_pattern.match(account_sid):
            problems.append(f"AccountSid: {account_sid!r} does not match {self.account_pattern.pattern}")
        document: dict[str, Any] = {}
        for key, text in params:
            caster = self._casters.get(key)
            if caster is None:
                if key not in UNDECLARED_BUT_ACCEPTED:
                    problems.append(f"{key}: not a Messages create parameter")
                continue
            try:
                value = caster(text)
            except ValueError:
                problems.append(f"{key}: {text!r} is not a valid {self.properties[key].get('type')}")
                continue
            if key in self.arrays:
                document.setdefault(key, []).append(value)
            else:
                document.setdefault(key, value)
        for error in self._validator.iter_errors(document):
            field = ".".join(str(p) for p in error.absolute_path) or "request"
            problems.append(f"{field}: {error.message}")
        return problems


class OpenAPIRequestValidator:
    """Full openapi-core validation of a Messages create request (slow, exhaustive)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from openapi_core import Config, OpenAPI

        # Validating the 1.8 MB spec document itself takes seconds and says nothing about requests.
        self._app = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
        self._declared = frozenset(
            spec["paths"][MESSAGES_PATH]["post"]["requestBody"]["content"][
                "application/x-www-form-urlencoded"
            ]["schema"]["properties"]
        )

    def problems(
        self, params: Sequence[tuple[str, str]], account_sid: str, authorization: str | None = None
    ) -> list[str]:
        from openapi_core.testing import MockRequest

        if authorization is None:
            authorization = "Basic " + base64.b64encode(b"SK" + b"0" * 32 + b":secret").decode()
        request = MockRequest(
            "https://api.twilio.com",
            "post",
            MESSAGES_PATH.replace("{AccountSid}", account_sid),
            headers={"Authorization": authorization},
            data=urlencode(list(params)).encode(),
            content_type="application/x-www-form-urlencoded",
        )
        problems: list[str] = []
        for error in self._app.unmarshal_request(request).errors:
            cause = error.__cause__
            where = getattr(error, "name", None) or type(error).__name__
            schema_errors = getattr(cause, "schema_errors", ())
            for e in schema_errors:
                field = ".".join(str(p) for p in e.absolute_path) or where
                problems.append(f"{field}: {e.message}")
            if not schema_errors:
                problems.append(f"{where}: {cause or error!r}")
        declared = self._declared | UNDECLARED_BUT_ACCEPTED
        problems += [f"{key}: not a Messages create parameter" for key, _ in params if key not in declared]
        return problems
