"""The Twilio simulator as a black box over HTTP: validation, Twilio's answers, queues, callbacks."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aiohttp import web

from consumer.simulator import SimulatorConfig, SimulatorHandle, running_simulator

SMS = [("To", "+14155550100"), ("From", "+14155550199"), ("Body", "Hello")]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with running_simulator(SimulatorConfig(seed=3)) as handle:
        yield handle


@pytest.fixture(autouse=True)
def fresh(sim: SimulatorHandle) -> None:
    sim.configure(**{k: v for k, v in vars(SimulatorConfig(seed=3)).items() if k != "templates"})
    sim.reset()


@pytest.fixture
def http(sim: SimulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sim.base_url, auth=(sim.api_key_sid, sim.api_key_secret), timeout=10
    ) as client:
        yield client


def create(http: httpx.Client, sim: SimulatorHandle, params: list[tuple[str, str]]) -> httpx.Response:
    return http.post(
        f"/2010-04-01/Accounts/{sim.account_sid}/Messages.json", content=urlencode(params), headers=FORM
    )


def test_a_valid_message_gets_a_twilio_shaped_201(http: httpx.Client, sim: SimulatorHandle) -> None:
    response = create(http, sim, [*SMS, ("Body", "ignored second body")][:3])
    assert response.status_code == 201
    body = response.json()
    assert body["sid"].startswith("SM")
    assert len(body["sid"]) == 34
    assert body["status"] == "queued"
    assert body["num_segments"] == "1"
    assert body["account_sid"] == sim.account_sid
    assert body["date_created"].endswith("GMT") or body["date_created"].endswith("+0000")
    assert body["uri"] == f"/2010-04-01/Accounts/{sim.account_sid}/Messages/{body['sid']}.json"


@pytest.mark.parametrize("validation", ["schema", "openapi"])
@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ([("To", "+1"), ("From", "+1"), ("Body", "x"), ("ValidityPeriod", "y")], 20001, "ValidityPeriod"),
        ([("To", "+14155550100"), ("From", "+1"), ("ContentSid", "HX12")], 20001, "ContentSid"),
        ([("To", "+14155550100"), ("From", "+1"), ("Body", "x"), ("Colour", "red")], 20001, "Colour"),
        ([("To", "+14155550100"), ("Body", "x")], 21603, "From"),
        ([("To", "+14155550100"), ("From", "+1")], 21619, "Body"),
        ([("From", "+14155550199"), ("Body", "x")], 21604, "To"),
        ([("To", "+14155550100"), ("From", "+1"), ("Body", "x" * 1601)], 21617, "Body"),
    ],
)  # fmt: skip
def test_requests_that_break_the_spec_or_twilios_rules_get_a_400_naming_the_field(
    http: httpx.Client,
    sim: SimulatorHandle,
    validation: str,
    params: list[tuple[str, str]],
    code: int,
    field: str,
) -> None:
    sim.configure(validation=validation)
    response = create(http, sim, params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert field in body["message"]
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert sim.messages() == []


def test_wrong_credentials_get_20003_with_a_basic_challenge(sim: SimulatorHandle) -> None:
    with httpx.Client(base_url=sim.base_url, auth=(sim.api_key_sid, "nope")) as client:
        response = create(client, sim, SMS)
    assert response.status_code == 401
    assert response.json()["code"] == 20003
    assert response.headers["www-authenticate"].startswith("Basic")


def test_any_well_formed_key_is_accepted_when_configured_for_demos(sim: SimulatorHandle) -> None:
    sim.configure(accept_any_credentials=True)
    with httpx.Client(base_url=sim.base_url, auth=("SK" + "1" * 32, "whatever")) as client:
        assert create(client, sim, SMS).status_code == 201
        client.auth = ("not-a-key", "whatever")  # type: ignore[assignment]
        assert create(client, sim, SMS).status_code == 401


def test_the_auth_token_is_accepted_as_account_sid_and_token(sim: SimulatorHandle) -> None:
    with httpx.Client(base_url=sim.base_url, auth=(sim.account_sid, sim.auth_token)) as client:
        assert create(client, sim, SMS).status_code == 201


def test_a_senders_queue_fills_and_then_answers_21611(http: httpx.Client, sim: SimulatorHandle) -> None:
    sim.configure(queue_seconds=2.0)  # a US long code sends 1 segment/s: 3 messages fit, the 4th does not
    codes = [create(http, sim, SMS).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 400]
    other_sender = [("To", "+14155550100"), ("From", "+14155550111"), ("Body", "Hi")]
    assert create(http, sim, other_sender).status_code == 201  # queues are per sender


def test_concurrency_beyond_the_account_limit_gets_429_with_retry_after(sim: SimulatorHandle) -> None:
    sim.configure(max_concurrency=2, latency_ms=200, retry_after_s=3)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=sim.base_url, auth=(sim.api_key_sid, sim.api_key_secret)) as c:
            url = f"/2010-04-01/Accounts/{sim.account_sid}/Messages.json"
            return list(await asyncio.gather(*(c.post(url, data=dict(SMS)) for _ in range(5))))

    responses = asyncio.run(burst())
    assert sorted(r.status_code for r in responses) == [201, 201, 429, 429, 429]
    refused = [r for r in responses if r.status_code == 429]
    assert all(r.json()["code"] == 20429 and r.headers["retry-after"] == "3" for r in refused)


def test_received_messages_are_listed_in_arrival_order_and_reset_clears_them(
    http: httpx.Client, sim: SimulatorHandle
) -> None:
    bodies = [f"message {i}" for i in range(5)]
    for body in bodies:
        create(http, sim, [("To", "+14155550100"), ("MessagingServiceSid", "MG" + "5" * 32), ("Body", body)])
    listed = http.get("/_sim/messages").json()
    assert [m["Body"] for m in listed] == bodies
    assert listed[0]["MessagingServiceSid"] == "MG" + "5" * 32
    assert {"sid", "To", "From", "ContentSid", "params", "received_at"} <= set(listed[0])
    assert http.post("/_sim/reset").status_code == 200
    assert http.get("/_sim/messages").json() == []


def test_runtime_configuration_over_http_starts_and_stops_a_storm(
    http: httpx.Client, sim: SimulatorHandle
) -> None:
    assert http.post("/_sim/config", json={"error_rates": {"20429": 1.0}}).status_code == 200
    assert create(http, sim, SMS).status_code == 429
    assert http.post("/_sim/config", json={"error_rates": {}}).status_code == 200
    assert create(http, sim, SMS).status_code == 201
    assert http.post("/_sim/config", json={"no_such_setting": 1}).status_code == 400


def test_messages_can_be_fetched_and_listed_like_twilio(http: httpx.Client, sim: SimulatorHandle) -> None:
    sid = create(http, sim, SMS).json()["sid"]
    create(http, sim, [("To", "+14155550177"), ("From", "+14155550199"), ("Body", "other")])
    base = f"/2010-04-01/Accounts/{sim.account_sid}"
    assert http.get(f"{base}/Messages/{sid}.json").json()["sid"] == sid
    assert http.get(f"{base}/Messages/SM{'0' * 32}.json").json()["code"] == 20404
    page = http.get(f"{base}/Messages.json", params={"To": "+14155550100"}).json()
    assert [m["sid"] for m in page["messages"]] == [sid]


def test_the_account_is_fetched_with_its_status(http: httpx.Client, sim: SimulatorHandle) -> None:
    sim.configure(account_status="closed")
    account = http.get(f"/2010-04-01/Accounts/{sim.account_sid}.json").json()
    assert (account["sid"], account["status"]) == (sim.account_sid, "closed")
    assert create(http, sim, SMS).json()["code"] == 20003


def test_content_pages_link_to_the_next_page_until_the_last(http: httpx.Client) -> None:
    first = http.get("/v1/Content", params={"PageSize": 2}).json()
    assert len(first["contents"]) == 2
    assert first["meta"]["key"] == "contents"
    third = httpx.get(first["meta"]["next_page_url"].replace("Page=1", "Page=2"), auth=http.auth).json()
    assert len(third["contents"]) == 1
    assert third["meta"]["next_page_url"] is None


class CallbackReceiver:
    """A loopback HTTP server recording the status callbacks it receives."""

    def __init__(self, expected: int) -> None:
        self.received: list[tuple[str, dict[str, str], str]] = []
        self.expected = expected
        self.all_in = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.received.append((str(request.url), form, request.headers["X-Twilio-Signature"]))
        if len(self.received) >= self.expected:
            self.all_in.set()
        return web.Response(text="")


async def test_status_callbacks_are_posted_after_delivery_and_signed_like_twilio(
    sim: SimulatorHandle,
) -> None:
    from twilio.request_validator import RequestValidator

    receiver = CallbackReceiver(expected=3)
    app = web.Application()
    app.router.add_post("/status", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sim.configure(status_callback_delay_ms=50, delivery_error_rates={})
    try:
        url = f"http://127.0.0.1:{port}/status"
        async with httpx.AsyncClient(base_url=sim.base_url, auth=(sim.api_key_sid, sim.api_key_secret)) as c:
            response = await c.post(
                f"/2010-04-01/Accounts/{sim.account_sid}/Messages.json",
                data={**dict(SMS), "StatusCallback": url, "From": "+14155550155"},
            )
        sid = response.json()["sid"]
        await asyncio.wait_for(receiver.all_in.wait(), timeout=5)
    finally:
        await runner.cleanup()
    assert [form["MessageStatus"] for _, form, _ in receiver.received] == ["queued", "sent", "delivered"]
    validator = RequestValidator(sim.auth_token)
    for received_url, form, signature in receiver.received:
        assert form["MessageSid"] == sid
        assert validator.validate(received_url, form, signature), "X-Twilio-Signature must verify"
        assert not validator.validate(received_url, {**form, "MessageStatus": "failed"}, signature)


def test_the_command_serves_until_terminated() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "simulator", "--port", str(port), "--latency-ms", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert proc.stdout is not None
        banner: dict[str, Any] = json.loads(proc.stdout.readline())
        assert banner["simulator"] == f"http://127.0.0.1:{port}"
        assert banner["validation"] == "schema"
        assert httpx.get(f"{banner['simulator']}/_sim/messages").json() == []
    finally:
        proc.terminate()
        code = proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0


def listing(http: httpx.Client, sim: SimulatorHandle, **query: str) -> list[dict[str, Any]]:
    response = http.get(f"/2010-04-01/Accounts/{sim.account_sid}/Messages.json", params=query)
    assert response.status_code == 200
    return list(response.json()["messages"])


def test_the_message_list_filters_by_to_and_from_as_twilio_does(
    http: httpx.Client, sim: SimulatorHandle
) -> None:
    service = ("MessagingServiceSid", "MG" + "5" * 32)
    create(http, sim, SMS)
    create(http, sim, [("To", "+14155550100"), service, ("Body", "via the service")])
    create(http, sim, [("To", "+14155550111"), ("From", "+14155550199"), ("Body", "someone else")])
    to = listing(http, sim, To="+14155550100")
    assert {m["body"] for m in to} == {"Hello", "via the service"}
    via = next(m for m in to if m["messaging_service_sid"])
    assert via["from"] == sim.config.service_number, "a service's message shows the pool number it used"
    assert [m["body"] for m in listing(http, sim, To="+14155550100", From="+14155550199")] == ["Hello"]
    assert listing(http, sim, To="+14155550199") == []


def test_a_queued_message_has_no_date_sent_and_a_date_filter_leaves_it_out(
    http: httpx.Client, sim: SimulatorHandle
) -> None:
    sim.configure(sender_rates={"long_code": 0.001})  # the second message waits in the sender's queue
    create(http, sim, SMS)
    create(http, sim, [*SMS[:2], ("Body", "queued")])
    listed = {m["body"]: m for m in listing(http, sim, To="+14155550100")}
    assert listed["queued"]["date_sent"] is None
    assert listed["queued"]["status"] == "queued"
    today = listed["Hello"]["date_sent"]
    assert today is not None
    from email.utils import parsedate_to_datetime

    day = parsedate_to_datetime(today).date().isoformat()
    assert [m["body"] for m in listing(http, sim, To="+14155550100", DateSent=day)] == ["Hello"]
    assert listing(http, sim, To="+14155550100")[0]["body"] == "queued", "not yet sent: listed first"


def test_the_message_list_pages_keep_the_filters(http: httpx.Client, sim: SimulatorHandle) -> None:
    for n in range(5):
        create(http, sim, [*SMS[:2], ("Body", f"m{n}")])
    first = http.get(f"/2010-04-01/Accounts/{sim.account_sid}/Messages.json",
                     params={"To": "+14155550100", "PageSize": "2"}).json()  # fmt: skip
    assert len(first["messages"]) == 2
    second = http.get(first["next_page_uri"]).json()
    assert "To=%2B14155550100" in first["next_page_uri"]
    assert len(second["messages"]) == 2
    assert not {m["sid"] for m in first["messages"]} & {m["sid"] for m in second["messages"]}


@pytest.mark.parametrize("failure", ["drop_after_accept_rate", "truncate_rate"])
def test_a_message_accepted_before_a_broken_answer_is_kept(
    http: httpx.Client, sim: SimulatorHandle, failure: str
) -> None:
    sim.configure(**{failure: 1.0})
    with pytest.raises(httpx.HTTPError):
        create(http, sim, SMS)
    sim.configure(**{failure: 0.0})
    assert [m["Body"] for m in sim.messages()] == ["Hello"], "Twilio has it, though the client cannot know"


def test_an_outage_answers_503_everywhere_then_refuses_connections_then_ends(
    http: httpx.Client, sim: SimulatorHandle
) -> None:
    sim.outage("503")
    assert create(http, sim, SMS).status_code == 503
    assert http.get(f"/2010-04-01/Accounts/{sim.account_sid}/Messages.json").status_code == 503
    assert create(http, sim, SMS).json()["code"] == 20503
    sim.outage("refuse", 0.5)
    with httpx.Client(base_url=sim.base_url, auth=(sim.api_key_sid, sim.api_key_secret), timeout=5) as fresh:
        with pytest.raises(httpx.ConnectError):
            fresh.post(f"/2010-04-01/Accounts/{sim.account_sid}/Messages.json", content=urlencode(SMS),
                       headers=FORM)  # fmt: skip
        for _ in range(100):  # the port opens again on its own
            try:
                response = fresh.post(f"/2010-04-01/Accounts/{sim.account_sid}/Messages.json",
                                      content=urlencode(SMS), headers=FORM)  # fmt: skip
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert response.status_code == 201
    assert len(sim.messages()) == 1


def test_the_list_by_to_forgets_what_the_store_has_let_go(http: httpx.Client, sim: SimulatorHandle) -> None:
    sim.configure(max_stored_messages=3)
    for n in range(4):
        to = "+14155550100" if n % 2 == 0 else "+14155550111"
        create(http, sim, [("To", to), SMS[1], ("Body", f"m{n}")])
    assert sorted(m["body"] for m in listing(http, sim, To="+14155550100")) == ["m2"], "m0 was let go"
    assert sorted(m["body"] for m in listing(http, sim, To="+14155550111")) == ["m1", "m3"]
    assert sorted(m["body"] for m in listing(http, sim)) == ["m1", "m2", "m3"]
