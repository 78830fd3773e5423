"""Every request shape the client can emit validates against Twilio's spec (openapi-core + rules).

The client's real bytes are captured with httpx.MockTransport and decoded back, so the contract
covers encoding too: order kept, MediaUrl repeated, JSON strings intact.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl

import httpx
import pytest

from consumer import __version__
from consumer.errors import ErrorClass, TwilioError
from consumer.settings import TwilioSettings
from consumer.twilio.client import TwilioClient
from tests.twilio_contract import assert_valid_message_request, message_request_problems

ACCOUNT = "AC" + "a" * 32
KEY = "SK" + "b" * 32
MG = "MG" + "c" * 32
HX = "HX" + "d" * 32
CALLBACK = "https://hooks.example.com/twilio/status"

SHAPES: dict[str, list[tuple[str, str]]] = {
    "sms long code": [("To", "+14155550100"), ("From", "+14155550199"), ("Body", "Hi Ana")],
    "sms short code sender": [("To", "+14155550100"), ("From", "12345"), ("Body", "Hi")],
    "sms to a short code": [("To", "55555"), ("From", "+14155550199"), ("Body", "Hi")],
    "sms toll free": [("To", "+14155550100"), ("From", "+18005550199"), ("Body", "Hi")],
    "sms alphanumeric": [("To", "+447700900123"), ("From", "ACME"), ("Body", "Hi")],
    "sms messaging service": [("To", "+14155550100"), ("MessagingServiceSid", MG), ("Body", "Hi")],
    "sms unicode 1600 chars": [("To", "+14155550100"), ("From", "+14155550199"), ("Body", "é" * 1600)],
    "mms body and media": [
        ("To", "+14155550100"), ("From", "+14155550199"), ("Body", "Look"),
        ("MediaUrl", "https://cdn.example.com/a.png"), ("MediaUrl", "https://cdn.example.com/b.jpg?x=1&y=2"),
    ],
    "mms media only, ten urls": [("To", "+14155550100"), ("From", "+14155550199")]
    + [("MediaUrl", f"https://cdn.example.com/{i}.png") for i in range(10)],
    "whatsapp free-form": [
        ("To", "whatsapp:+14155550100"), ("From", "whatsapp:+14155550199"), ("Body", "Hi"),
    ],
    "whatsapp template": [
        ("To", "whatsapp:+14155550100"), ("From", "whatsapp:+14155550199"), ("ContentSid", HX),
        ("ContentVariables", json.dumps({"1": "Ana", "2": "Tue 10:00"})),
    ],
    "whatsapp template via service": [
        ("To", "whatsapp:+14155550100"), ("MessagingServiceSid", MG), ("ContentSid", HX),
        ("ContentVariables", "{}"),
    ],
    "whatsapp media": [
        ("To", "whatsapp:+14155550100"), ("From", "whatsapp:+14155550199"),
        ("MediaUrl", "https://cdn.example.com/a.png"),
    ],
    "rcs via service": [("To", "rcs:+14155550100"), ("MessagingServiceSid", MG), ("ContentSid", HX)],
    "rcs plain number via service": [("To", "+14155550100"), ("MessagingServiceSid", MG), ("Body", "Hi")],
    "messenger": [("To", "messenger:1234567890"), ("From", "messenger:9876543210"), ("Body", "Hi")],
    "all options": [
        ("To", "+14155550100"), ("MessagingServiceSid", MG), ("Body", "Sale starts https://example.com/s"),
        ("StatusCallback", CALLBACK), ("ValidityPeriod", "36000"), ("SendAt", "2030-05-01T09:00:00Z"),
        ("ScheduleType", "fixed"), ("ShortenUrls", "true"), ("Attempt", "1"), ("SmartEncoded", "true"),
        ("RiskCheck", "disable"), ("Tags", json.dumps({"audience": "vip", "journey_id": "jr_1"})),
        ("ContentRetention", "retain"), ("AddressRetention", "obfuscate"), ("MaxPrice", "0.05"),
        ("ProvideFeedback", "false"), ("PersistentAction", "mailto:a@example.com"),
    ],
    "fallback sender": [
        ("To", "+14155550100"), ("MessagingServiceSid", MG), ("Body", "Hi"),
        ("FallbackFrom", "+14155550199"),
    ],
    "minimum validity": [
        ("To", "+14155550100"), ("From", "+14155550199"), ("Body", "Hi"), ("ValidityPeriod", "1"),
    ],
}  # fmt: skip


async def emitted(params: list[tuple[str, str]]) -> httpx.Request:
    """The request the client sends for `params` (answered with a Twilio-like 201)."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"sid": "SM" + "e" * 32, "status": "queued", "num_segments": "2"})

    settings = TwilioSettings(account_sid=ACCOUNT, api_key_sid=KEY, api_key_secret="s3cret")  # type: ignore[arg-type]
    async with TwilioClient(settings, transport=httpx.MockTransport(answer)) as client:
        result = await client.send(params)
    assert result.sid == "SM" + "e" * 32
    assert result.num_segments == 2
    (request,) = seen
    return request


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_each_request_shape_the_client_emits_validates_against_the_official_spec(shape: str) -> None:
    request = await emitted(SHAPES[shape])
    sent = parse_qsl(request.content.decode(), keep_blank_values=True, strict_parsing=True)
    assert sent == SHAPES[shape], "the client must keep order and repetition exactly"
    assert_valid_message_request(sent, account_sid=ACCOUNT)


async def test_the_request_is_a_basic_auth_form_post_to_the_account_messages_url() -> None:
    request = await emitted(SHAPES["sms long code"])
    assert request.method == "POST"
    assert str(request.url) == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"{KEY}:s3cret".encode()).decode()
    assert request.headers["user-agent"] == f"kafka-twilio/{__version__}"


@pytest.mark.parametrize(
    ("region", "edge", "base_url", "expected"),
    [
        ("", "", "", "https://api.twilio.com"),
        ("ie1", "dublin", "", "https://api.dublin.ie1.twilio.com"),
        ("au1", "sydney", "", "https://api.sydney.au1.twilio.com"),
        ("", "", "http://127.0.0.1:8099/", "http://127.0.0.1:8099"),
    ],
)
async def test_the_base_url_follows_region_and_edge_or_the_override(
    region: str, edge: str, base_url: str, expected: str
) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(201, json={"sid": "SM1", "status": "queued", "num_segments": "1"})

    settings = TwilioSettings(
        account_sid=ACCOUNT,
        auth_token="tok",
        region=region,
        edge=edge,
        base_url=base_url,  # type: ignore[arg-type]
    )
    async with TwilioClient(settings, transport=httpx.MockTransport(answer)) as client:
        await client.send(SHAPES["sms long code"])
    assert seen == [f"{expected}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"]


async def test_an_error_body_is_parsed_into_a_classified_twilio_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {
            "code": 21610,
            "message": "unsubscribed",
            "more_info": "https://www.twilio.com/docs/errors/21610",
        }
        return httpx.Response(400, json={**body, "status": 400})

    settings = TwilioSettings(account_sid=ACCOUNT, auth_token="tok")  # type: ignore[arg-type]
    async with TwilioClient(settings, transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(TwilioError) as caught:
            await client.send(SHAPES["sms long code"])
    error = caught.value
    assert (error.error_class, error.code, error.status) == (ErrorClass.RECIPIENT, 21610, 400)
    assert error.more_info.endswith("/21610")
    assert "unsubscribed" in str(error)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([("From", "+14155550199"), ("Body", "Hi")], "To"),
        ([("To", "+14155550100"), ("Body", "Hi")], "MessagingServiceSid"),
        ([("To", "+14155550100"), ("From", "+14155550199")], "Body, a MediaUrl or a ContentSid"),
        ([("To", "+1"), ("From", "+1"), ("Body", "x" * 1601)], "21617"),
        ([("To", "+1"), ("From", "+1"), ("ContentSid", HX), ("ContentVariables", '{"1": 2}')], "21656"),
        ([("To", "+1"), ("From", "+1"), ("ContentSid", "HX123")], "ContentSid"),
        ([("To", "+1"), ("From", "+1"), ("Body", "x"), ("ValidityPeriod", "soon")], "integer"),
        ([("To", "+1"), ("From", "+1"), ("Body", "x"), ("ScheduleType", "later")], "ScheduleType"),
        ([("To", "+1"), ("From", "+1"), ("Body", "x"), ("Mediaurl", "https://a.example/x")], "Mediaurl"),
        ([("To", "+1"), ("From", "+1"), ("Body", "x"), ("Body", "y")], "sent 2 times"),
        ([("To", "+1"), ("From", "+1"), ("Body", "x"), ("SendAt", "2030-01-01T00:00:00Z")], "ScheduleType"),
        (
            [("To", "+1"), ("From", "+1")] + [("MediaUrl", f"https://a.example/{i}") for i in range(11)],
            "21623",
        ),
    ],
)
def test_the_contract_helper_rejects_what_twilio_would_reject(
    params: list[tuple[str, str]], expected: str
) -> None:
    problems = message_request_problems(params)
    assert any(expected in p for p in problems), problems
    with pytest.raises(AssertionError, match="invalid Twilio Messages create request"):
        assert_valid_message_request(params)


def test_the_contract_helper_checks_the_account_sid_in_the_path() -> None:
    with pytest.raises(AssertionError, match="AccountSid"):
        assert_valid_message_request(SHAPES["sms long code"], account_sid="AC123")
