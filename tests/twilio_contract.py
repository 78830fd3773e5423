"""Contract check shared by the tests: does a Messages create request validate against Twilio's spec?

`assert_valid_message_request(params)` validates the exact form request with openapi-core against
the official `twilio_api_v2010.json` (path, Basic-auth security, body schema), rejects keys the
spec does not declare, then applies Twilio's conditional rules that the spec leaves to a vendor
extension (`consumer.simulator.rules`). The spec folder comes from `TWILIO_OAI_DIR`, else
`../shared/twilio-oai` next to the project root; tests skip when it is absent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pytest

from consumer.simulator.rules import message_problems
from consumer.simulator.spec import API_SPEC, OpenAPIRequestValidator, load_spec

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32


def spec_dir() -> Path:
    """The folder holding the official specs (the `json/` folder itself, or its parent)."""
    base = Path(os.environ.get("TWILIO_OAI_DIR") or PROJECT_ROOT.parent / "shared" / "twilio-oai")
    return base / "json" if (base / "json").is_dir() else base


def spec_file(name: str = API_SPEC) -> Path:
    """Path of one spec file; skips the calling test when the specs are not available."""
    path = spec_dir() / name
    if not path.is_file():
        pytest.skip(f"Twilio OpenAPI spec not found at {path}: set TWILIO_OAI_DIR")
    return path


@cache
def _validator(path: Path) -> OpenAPIRequestValidator:
    return OpenAPIRequestValidator(load_spec(path))


def message_request_problems(
    params: Sequence[tuple[str, str]], account_sid: str = DEFAULT_ACCOUNT_SID
) -> list[str]:
    """Every reason the form request is invalid: spec (openapi-core), unknown keys, Twilio's rules."""
    bad_types = [f"{k!r}={v!r}: keys and values must be str" for k, v in params if not (
        isinstance(k, str) and isinstance(v, str))]  # fmt: skip
    if bad_types:
        return bad_types
    problems = [f"spec: {p}" for p in _validator(spec_file()).problems(params, account_sid)]
    return problems + [str(p) for p in message_problems(params)]


def assert_valid_message_request(
    params: Sequence[tuple[str, str]], account_sid: str = DEFAULT_ACCOUNT_SID
) -> None:
    """Raise AssertionError listing every problem when `params` is not a valid Messages create form."""
    problems = message_request_problems(params, account_sid)
    if problems:
        raise AssertionError(
            "invalid Twilio Messages create request:\n  "
            + "\n  ".join(problems)
            + f"\nparams: {list(params)!r}"
        )
