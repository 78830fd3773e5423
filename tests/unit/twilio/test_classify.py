"""Error classification: Twilio codes and HTTP statuses, and transport failures at the HTTP edge."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import httpx
import pytest

from consumer.errors import ErrorClass
from consumer.twilio.classify import CODE_CLASSES, classify
from consumer.twilio.transport import transport_error_class

R, M, P, S, C = (
    ErrorClass.RETRYABLE,
    ErrorClass.MAY_HAVE_SENT,
    ErrorClass.PERMANENT,
    ErrorClass.RECIPIENT,
    ErrorClass.CONFIGURATION,
)

# The reference table (reference/twilio-api.md), code for code.
REFERENCE = {
    20429: R, 21611: R, 30001: R, 63018: R, 30003: R, 30008: R,
    20003: C, 20404: P, 21211: P, 21614: P, 21408: C, 21606: C,
    21610: S, 21617: P, 21656: P, 30004: P, 30007: P, 30005: S, 30006: S, 63016: P,
}  # fmt: skip
REFERENCE_DOC = Path(__file__).resolve().parents[4] / "shared" / "reference" / "twilio-api.md"


@pytest.mark.parametrize(("code", "expected"), sorted(REFERENCE.items()))
def test_each_reference_code_is_classified_as_the_reference_says(code: int, expected: ErrorClass) -> None:
    assert classify(400, code) is expected


def test_every_code_in_the_reference_document_is_mapped() -> None:
    if not REFERENCE_DOC.is_file():
        pytest.skip(f"reference document not found at {REFERENCE_DOC}")
    table = [line for line in REFERENCE_DOC.read_text().splitlines() if re.match(r"^\| \d{5}", line)]
    codes = {int(c) for line in table for c in re.findall(r"\b(\d{5})\b", line.split("|")[1])}
    assert codes, "no codes parsed from the reference table"
    assert codes <= set(CODE_CLASSES), f"unmapped: {sorted(codes - set(CODE_CLASSES))}"
    assert codes == set(REFERENCE), "the test's copy of the reference table is out of date"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, None, R),
        (429, 20429, R),
        (408, None, R),
        (500, None, M),
        (502, None, M),
        (503, 20503, M),
        (401, None, C),
        (403, None, C),
        (400, 99999, P),
        (404, None, P),
        (400, 21610, S),
        (None, None, M),
    ],
)
def test_unknown_codes_fall_back_to_the_http_status(
    status: int | None, code: int | None, expected: ErrorClass
) -> None:
    assert classify(status, code) is expected


def test_a_known_code_wins_over_the_http_status() -> None:
    assert classify(500, 21211) is P
    assert classify(400, 20429) is R


def _wrapped(original: BaseException, as_: type[httpx.HTTPError]) -> httpx.HTTPError:
    """What httpx-aiohttp raises: its mapped httpx error, caused by the aiohttp one."""
    try:
        try:
            raise original
        except BaseException as exc:
            raise as_("mapped") from exc
    except httpx.HTTPError as mapped:
        return mapped


class _Key:
    host, port, ssl, is_ssl = "127.0.0.1", 9, None, False


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # httpx's own transport
        (httpx.ConnectError("refused"), R),
        (httpx.ConnectTimeout("slow connect"), R),
        (httpx.PoolTimeout("no free connection"), R),
        (httpx.ReadTimeout("no answer"), M),
        (httpx.WriteTimeout("stuck writing"), M),
        (httpx.ReadError("reset"), M),
        (httpx.RemoteProtocolError("server disconnected"), M),
        # httpx-aiohttp maps all of these to ConnectTimeout; the aiohttp cause decides
        (_wrapped(aiohttp.ClientConnectorError(_Key(), OSError(111, "refused")), httpx.ConnectError), R),  # type: ignore[arg-type]
        (_wrapped(aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout), R),
        (_wrapped(aiohttp.ServerDisconnectedError(), httpx.ConnectTimeout), M),
        (_wrapped(aiohttp.ClientOSError(104, "reset by peer"), httpx.ConnectTimeout), M),
        (_wrapped(aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout), M),
        (_wrapped(aiohttp.ClientPayloadError("truncated"), httpx.ReadError), M),
    ],
    ids=lambda v: (
        type(v).__name__ + (f"<-{type(v.__cause__).__name__}" if getattr(v, "__cause__", None) else "")
    ),
)
def test_only_failures_before_the_request_was_written_are_retryable(
    error: BaseException, expected: ErrorClass
) -> None:
    assert transport_error_class(error) is expected
