"""TwilioClient against the simulator on loopback: each answer and failure, and how it is classified.

What the send path then does with each class (retry, dead-letter, halt) is in test_delivery.py."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from consumer.errors import ErrorClass, MappingError, TwilioError
from consumer.settings import TwilioSettings
from consumer.simulator import SimulatorConfig, SimulatorHandle, running_simulator
from consumer.simulator.config import sample_templates
from consumer.twilio.client import TwilioClient
from consumer.twilio.content import verify_templates

SMS = [("To", "+14155550100"), ("From", "+14155550199"), ("Body", "Hello from the test")]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(SimulatorConfig(seed=7)) as handle:
        yield handle


@pytest.fixture(autouse=True)
def fresh(sim: SimulatorHandle) -> None:
    sim.configure(**{k: v for k, v in vars(SimulatorConfig(seed=7)).items() if k not in ("templates",)})
    sim.reset()


def settings_for(sim: SimulatorHandle, **changes: Any) -> TwilioSettings:
    values: dict[str, Any] = {
        "account_sid": sim.account_sid,
        "api_key_sid": sim.api_key_sid,
        "api_key_secret": sim.api_key_secret,
        "base_url": sim.base_url,
        "timeout_s": 5.0,
    }
    return TwilioSettings(**{**values, **changes})


@pytest.fixture
async def client(sim: SimulatorHandle) -> AsyncIterator[TwilioClient]:
    async with TwilioClient(settings_for(sim), max_connections=32) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_message_is_created_and_the_simulator_receives_the_exact_form(
    client: TwilioClient, sim: SimulatorHandle
) -> None:
    params = [
        *SMS,
        ("MediaUrl", "https://cdn.example.com/a.png"),
        ("MediaUrl", "https://cdn.example.com/b.png"),
    ]
    result = await client.send(params)
    assert result.sid.startswith("SM")
    assert result.status == "queued"
    assert result.num_segments == 1
    assert result.error_code is None
    assert result.latency_s > 0
    (received,) = sim.messages()
    assert received["sid"] == result.sid
    assert [tuple(p) for p in received["params"]] == params


async def test_a_long_unicode_body_reports_its_segments(client: TwilioClient) -> None:
    result = await client.send([("To", "+14155550100"), ("From", "+14155550199"), ("Body", "ж" * 71)])
    assert result.num_segments == 2


@pytest.mark.parametrize(
    ("params", "code", "error_class"),
    [
        ([("To", "+15005550001"), ("From", "+14155550199"), ("Body", "x")], 21211, ErrorClass.PERMANENT),
        ([("To", "+15005550004"), ("From", "+14155550199"), ("Body", "x")], 21610, ErrorClass.RECIPIENT),
        ([("To", "+15005550009"), ("From", "+14155550199"), ("Body", "x")], 21614, ErrorClass.PERMANENT),
        ([("To", "+15005550003"), ("From", "+14155550199"), ("Body", "x")], 21408, ErrorClass.CONFIGURATION),
        ([("To", "+14155550100"), ("From", "+15005550007"), ("Body", "x")], 21606, ErrorClass.CONFIGURATION),
        ([("To", "+14155550100"), ("From", "+15005550008"), ("Body", "x")], 21611, ErrorClass.RETRYABLE),
        (
            [("To", "+14155550100"), ("From", "+14155550199"), ("Body", "x" * 1601)],
            21617,
            ErrorClass.PERMANENT,
        ),
        (
            [("To", "whatsapp:+14155563016"), ("From", "whatsapp:+14155550199"), ("Body", "free-form")],
            63016,
            ErrorClass.PERMANENT,
        ),
        (
            [("To", "+14155550100"), ("From", "+14155550199"), ("ContentSid", "HX" + "f" * 32)],
            20404,
            ErrorClass.PERMANENT,
        ),
        (
            [
                ("To", "+14155550100"),
                ("From", "+14155550199"),
                ("ContentSid", sample_templates()[0]["sid"]),
                ("ContentVariables", '{"1": 42}'),
            ],
            21656,
            ErrorClass.PERMANENT,
        ),
    ],
)
async def test_twilio_error_codes_are_classified(
    client: TwilioClient, params: list[tuple[str, str]], code: int, error_class: ErrorClass
) -> None:
    with pytest.raises(TwilioError) as caught:
        await client.send(params)
    assert (caught.value.code, caught.value.error_class) == (code, error_class)
    assert caught.value.status in (400, 404)


async def test_a_recipient_on_the_stop_list_is_a_recipient_error(
    client: TwilioClient, sim: SimulatorHandle
) -> None:
    sim.configure(stop_list={"+14155550123"})
    calls = 0

    async def send() -> Any:
        nonlocal calls
        calls += 1
        return await client.send([("To", "+14155550123"), ("From", "+14155550199"), ("Body", "x")])

    with pytest.raises(TwilioError) as caught:
        await send()
    assert (caught.value.code, caught.value.error_class) == (21610, ErrorClass.RECIPIENT)
    assert calls == 1
    assert sim.messages() == []


async def test_wrong_credentials_are_a_configuration_error(sim: SimulatorHandle) -> None:
    async with TwilioClient(settings_for(sim, api_key_secret="wrong")) as bad:
        with pytest.raises(TwilioError) as caught:
            await bad.send(SMS)
        assert (caught.value.code, caught.value.status) == (20003, 401)
        assert caught.value.error_class is ErrorClass.CONFIGURATION
        with pytest.raises(TwilioError) as check:
            await bad.check_credentials()
    assert check.value.error_class is ErrorClass.CONFIGURATION
    assert "TWILIO_API_KEY_SECRET" in str(check.value)
    assert "TWILIO_REGION" in str(check.value)


async def test_the_credential_check_returns_the_active_account(
    client: TwilioClient, sim: SimulatorHandle
) -> None:
    account = await client.check_credentials()
    assert account["sid"] == sim.account_sid
    assert account["status"] == "active"


async def test_the_credential_check_names_a_suspended_account(
    client: TwilioClient, sim: SimulatorHandle
) -> None:
    sim.configure(account_status="suspended")
    with pytest.raises(TwilioError, match="is suspended") as caught:
        await client.check_credentials()
    assert caught.value.error_class is ErrorClass.CONFIGURATION


async def test_the_credential_check_names_the_account_sid_when_it_is_not_this_accounts(
    sim: SimulatorHandle,
) -> None:
    async with TwilioClient(settings_for(sim, account_sid="AC" + "9" * 32)) as other:
        with pytest.raises(TwilioError, match="TWILIO_ACCOUNT_SID") as caught:
            await other.check_credentials()
    assert caught.value.error_class is ErrorClass.CONFIGURATION


async def test_the_credential_check_names_the_region_when_twilio_is_unreachable(sim: SimulatorHandle) -> None:
    async with TwilioClient(settings_for(sim, base_url=f"http://127.0.0.1:{free_port()}")) as nowhere:
        with pytest.raises(TwilioError, match="TWILIO_REGION") as caught:
            await nowhere.check_credentials()
    # No answer: an outage or a wrong region; the service waits a while before calling it the region.
    assert caught.value.error_class is ErrorClass.RETRYABLE


async def test_a_read_timeout_may_have_sent_and_indeed_the_message_was_accepted(sim: SimulatorHandle) -> None:
    sim.configure(timeout_rate=1.0, hang_s=1.0)
    async with TwilioClient(settings_for(sim, timeout_s=0.2)) as impatient:
        with pytest.raises(TwilioError) as caught:
            await impatient.send(SMS)
    assert caught.value.error_class is ErrorClass.MAY_HAVE_SENT
    assert "ReadTimeout" in str(caught.value)
    assert len(sim.messages()) == 1  # Twilio had the message: retrying would have sent it twice


async def test_a_dropped_connection_after_the_request_may_have_sent(
    client: TwilioClient, sim: SimulatorHandle
) -> None:
    sim.configure(disconnect_rate=1.0)
    with pytest.raises(TwilioError) as caught:
        await client.send(SMS)
    assert caught.value.error_class is ErrorClass.MAY_HAVE_SENT


async def test_every_content_page_is_listed_and_templates_are_fetched(
    client: TwilioClient, sim: SimulatorHandle
) -> None:
    many = sample_templates(sim.account_sid) + [
        {**sample_templates(sim.account_sid)[4], "sid": f"HX{n:032x}"} for n in range(100, 1200)
    ]
    sim.configure(templates=many)
    listed = await client.list_content()
    assert len(listed) == len(many)  # three pages of 500
    assert len({t["sid"] for t in listed}) == len(many)
    fetched = await client.fetch_content(many[0]["sid"])
    assert fetched["types"]["twilio/text"]["body"] == "Hi {{1}}, welcome to {{2}}!"
    with pytest.raises(TwilioError) as caught:
        await client.fetch_content("HX" + "f" * 32)
    assert (caught.value.code, caught.value.error_class) == (20404, ErrorClass.PERMANENT)


async def test_template_checks_report_every_mapping_problem_at_start_up(client: TwilioClient) -> None:
    welcome, media = sample_templates()[0]["sid"], sample_templates()[1]["sid"]
    await verify_templates(client, [("ok", welcome, "sms", ("1", "2"))])
    with pytest.raises(MappingError) as caught:
        await verify_templates(
            client,
            [
                ("missing", "HX" + "f" * 32, "sms", ()),
                ("wrong-channel", media, "sms", ("1", "2")),
                ("wrong-vars", welcome, "whatsapp", ("1", "3")),
            ],
        )
    problems = caught.value.problems
    assert len(problems) == 4
    assert "'missing'" in problems[0]
    assert "does not exist" in problems[0]
    assert "'wrong-channel'" in problems[1]
    assert "sms" in problems[1]
    assert "{{3}}" in problems[2]
    assert "{{2}}" in problems[3]


async def test_messaging_services_are_listed(client: TwilioClient) -> None:
    services = await client.list_services()
    assert [s["sid"] for s in services] == ["MG" + "5" * 32]


async def test_the_direct_send_path_writes_the_headers_and_body_twilio_expects() -> None:
    """The fast path bypasses httpx's request building: check what really goes on the wire."""
    import base64

    from aiohttp import web

    from consumer.twilio.client import USER_AGENT

    seen: list[tuple[dict[str, str], bytes, str]] = []

    async def create(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read(), request.path))
        body = {"sid": "SM" + "1" * 32, "status": "queued", "num_segments": "1", "error_code": None}
        return web.json_response(body, status=201)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", create)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    account, key = "AC" + "a" * 32, "SK" + "b" * 32
    settings = TwilioSettings(
        account_sid=account, api_key_sid=key, api_key_secret="secret", base_url=f"http://127.0.0.1:{port}"
    )
    try:
        async with TwilioClient(settings) as c:
            result = await c.send(
                [("To", "+14155550100"), ("MediaUrl", "https://a/1.png"), ("MediaUrl", "https://a/ä b.png")]
            )
    finally:
        await runner.cleanup()
    assert result.sid == "SM" + "1" * 32
    [(headers, body, path)] = seen
    assert path == f"/2010-04-01/Accounts/{account}/Messages.json"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"{key}:secret".encode()).decode()
    assert (
        body == b"To=%2B14155550100&MediaUrl=https%3A%2F%2Fa%2F1.png&MediaUrl=https%3A%2F%2Fa%2F%C3%A4+b.png"
    )


async def test_a_twilio_5xx_may_have_sent(client: TwilioClient, sim: SimulatorHandle) -> None:
    sim.configure(error_rates={500: 1.0})
    with pytest.raises(TwilioError) as caught:
        await client.send(SMS)
    assert (caught.value.status, caught.value.code) == (500, 20500)
    assert caught.value.error_class is ErrorClass.MAY_HAVE_SENT


async def test_a_refused_connection_is_retryable(sim: SimulatorHandle) -> None:
    async with TwilioClient(settings_for(sim, base_url=f"http://127.0.0.1:{free_port()}")) as nowhere:
        with pytest.raises(TwilioError) as caught:
            await nowhere.send(SMS)
    assert caught.value.error_class is ErrorClass.RETRYABLE
    assert caught.value.status is None


async def test_a_429_is_retryable_and_carries_retry_after(client: TwilioClient, sim: SimulatorHandle) -> None:
    sim.configure(error_rates={20429: 1.0}, retry_after_s=0.05)
    with pytest.raises(TwilioError) as caught:
        await client.send(SMS)
    assert (caught.value.status, caught.value.code, caught.value.retry_after_s) == (429, 20429, 0.05)
    assert caught.value.error_class is ErrorClass.RETRYABLE
